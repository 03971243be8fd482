"""MLflow: the tracker (one client per tracking URI), the registry and what a model
version records."""
