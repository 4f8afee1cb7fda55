"""The console's widgets, one per module (fmt: cell formatting helpers)."""
