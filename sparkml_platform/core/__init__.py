"""The vocabulary every layer shares: errors (and their exit codes), references (NAME@N,
run dates), environment variables, provenance of imported code, the version."""
