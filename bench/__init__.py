"""mipd's benchmark harness (``make bench``, ``make bench-quick``); ``python -m bench --help``."""
