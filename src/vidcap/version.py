"""The version of vidcap: a leaf module, so that the summary and the CLI read it without the API."""

__version__ = "0.1.0"
