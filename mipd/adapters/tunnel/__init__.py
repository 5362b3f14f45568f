"""Tunnel data planes: the backends' interface, the home agent's kernel and userspace backends, the
foreign agent's visitor backends and routing, the co-located node's tunnel, broadcast forwarding."""
