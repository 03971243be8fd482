"""Stage: what the lake and registry hold, lineage, monitoring and the report."""
