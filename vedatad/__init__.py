"""vedatad: temporal action detection in untrimmed videos."""
from .version import __version__

__all__ = ["__version__"]
