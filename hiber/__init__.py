"""hiber: checkpoint/restore of live Linux process trees, in CRIU's image format."""

__version__ = "0.1.0"
