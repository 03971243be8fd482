"""{{project}}: the project's own code (transformations, entity functions, estimators)."""
