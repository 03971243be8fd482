"""Stage: batch scoring, the online store publish and the online server."""
