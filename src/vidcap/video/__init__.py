"""Video metadata, frame planning and decoding."""
