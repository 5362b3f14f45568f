"""The local control socket that mipctl talks to."""
