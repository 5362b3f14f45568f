"""The packaging tests' fixtures: the session's .deb and the package installed (tests/support/package.py)."""

from tests.support.package import deb_file, installed_deb  # noqa: F401 - fixtures, used by name
