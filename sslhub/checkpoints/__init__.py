"""Checkpoint formats: reading, layout detection, loading, conversion and inspection."""
