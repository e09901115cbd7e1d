"""Mining-fleet health inference server."""

__version__ = "0.1.0"
