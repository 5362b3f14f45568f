"""Netlink: every rtnetlink call mipd makes (calls), the mobile node's and the foreign agent's
(mobile, policy), and the link monitor (monitor)."""
