"""mipd: Mobile IPv4 (RFC 5944) for Linux."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mipd")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
