"""collab: a collaborative text editing backend that speaks the standard Yjs protocol."""

__version__ = "0.1.0"

__all__ = ["__version__"]
