"""Sans-I/O core: the RFC 5944 wire codec and the protocol engines.

Pure code, standard library only: bytes and events in, actions and bytes out, the clock
passed in. Nothing here opens a socket, reads a clock, logs or sleeps; an import-linter
contract in pyproject.toml holds that line."""
