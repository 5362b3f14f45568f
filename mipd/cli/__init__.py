"""The mipd and mipctl command lines."""
