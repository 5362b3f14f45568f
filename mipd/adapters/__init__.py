"""Adapters that execute the core's actions and feed it events (UDP 434, ICMP, netlink, tunnels)."""
