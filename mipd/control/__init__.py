"""The local control socket that mipctl talks to.

- :mod:`mipd.control.protocol`: the wire format (one JSON request line, one JSON response line).
- :mod:`mipd.control.handler`: ``ControlHandler``, what the runtime implements, and ``ControlError``.
- :mod:`mipd.control.shapes`: the results of ``mipctl --json`` (mipctl(8) JSON OUTPUT) built from core objects.
- :mod:`mipd.control.server`: ``ControlServer``, the daemon's Unix socket (mode 0600).
- :mod:`mipd.control.client`: one blocking request, as mipctl sends it.
"""
