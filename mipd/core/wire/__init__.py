"""The RFC 5944 wire codec: messages, extensions, authenticators, ICMP, frames, tunnel headers,
Identification and reply codes. It imports nothing of mipd outside this package."""
