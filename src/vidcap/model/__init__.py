"""What vidcap knows of a model before and while it loads: where it is, its config, its processor."""
