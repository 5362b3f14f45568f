"""Which runtime runs which role: a profile's ``role`` to the class that runs it.

The daemon asks :func:`runtime_for` for its role's runtime and hands it itself as the
:class:`~mipd.runtime.host.Host`; no runtime imports the daemon.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mipd.config import AnyProfile
from mipd.runtime.foreign_agent import ForeignAgentRuntime
from mipd.runtime.home_agent import HomeAgentRuntime
from mipd.runtime.host import Host, StartError
from mipd.runtime.mobile_node import MobileNodeRuntime
from mipd.runtime.role import Role

# By the profile's ``role`` (mipd.config.models.ROLES); each takes the profile of its own role.
RUNTIMES: Mapping[str, Callable[[Host, Any], Role]] = {
    "home-agent": HomeAgentRuntime,
    "foreign-agent": ForeignAgentRuntime,
    "mobile-node": MobileNodeRuntime,
}


def runtime_for(host: Host, profile: AnyProfile) -> Role:
    """The runtime of ``profile``'s role (StartError for a role without one)."""
    factory = RUNTIMES.get(profile.role)
    if factory is None:
        raise StartError(f"no runtime for the {profile.role} role")
    return factory(host, profile)
