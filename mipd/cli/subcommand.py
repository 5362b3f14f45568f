"""What a ``mipd`` subcommand module provides, and the types it uses.

A subcommand is one module with ``register(subparsers)``: it adds its parser and sets
``handler`` (a :data:`Handler`) as a default; ``mipd.cli.mipd.SUBCOMMANDS`` lists the modules.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

Subparsers = argparse._SubParsersAction  # the object add_subparsers() returns
Handler = Callable[[argparse.Namespace], int]  # runs the subcommand, returns the exit status
