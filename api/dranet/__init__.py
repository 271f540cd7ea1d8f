"""dranet."""
