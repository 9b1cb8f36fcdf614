"""The client's version (also the wheel's: pyproject.toml reads it from here)."""
__version__ = "0.2.0"
