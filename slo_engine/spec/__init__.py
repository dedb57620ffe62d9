"""SLO files: the format, loading with positions, validation, and the compiled model."""
