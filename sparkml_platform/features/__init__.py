"""Stage: sources loaded into the lake, feature tables built, validated and versioned."""
