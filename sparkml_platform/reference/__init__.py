"""The reference pipeline's transformations (NYC flights 2013)."""
