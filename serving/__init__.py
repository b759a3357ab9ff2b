"""The HTTP server: serves the champion model's scores (``python -m serving``)."""
