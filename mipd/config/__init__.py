"""Profiles: pydantic v2 models of /etc/mip/<instance>.yaml and their loading."""
