"""What code runs on: the Spark session and its jars, the class archive, captured and
packed environments, and the user's own project code."""
