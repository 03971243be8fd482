"""Stage: point-in-time training sets built, versioned, pruned and vacuumed."""
