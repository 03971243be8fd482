"""Stage: models trained, tuned, gated and registered."""
