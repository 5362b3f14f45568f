"""What the daemon needs of a role's runtime (home agent, foreign agent, mobile node).

The daemon (mipd.runtime.daemon) owns what every role shares: the event loop and its one timer,
the state file and the group commit, the journal, signals, reload and the control socket. A role
owns its engine and adapters, and declares in its action table (mipd.runtime.host) what is done
with each of its actions and when. It sees the daemon only as a :class:`~mipd.runtime.host.Host`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from mipd.adapters.state.store import StateStore
from mipd.adapters.tunnel.backend import BackendKind
from mipd.config import AnyProfile
from mipd.control.handler import ControlHandler
from mipd.control.protocol import JSONObject
from mipd.runtime.host import ActionTable, Host, Timed


class Role(Protocol):
    """One role's runtime inside the daemon."""

    @property
    def backend(self) -> BackendKind:
        """The tunnel backend in use, as status and the journal say."""
        ...

    @property
    def actions(self) -> ActionTable:
        """What is done with each action type of this role's engines, and in which phase."""
        ...

    @property
    def timed(self) -> list[Timed]:
        """The components the daemon's one timer drives (empty until started)."""
        ...

    async def start(self, store: StateStore) -> None:
        """Open adapters, make the engine, restore its state from ``store``, reconcile the data
        plane (StartError)."""
        ...

    def settled(self) -> None:
        """A turn's actions were carried out (the foreign agent re-checks whether it is busy)."""
        ...

    def started(self) -> tuple[str, str, dict[str, str]]:
        """daemon.started's message, MIP_REASON (the backend and why) and other fields."""
        ...

    def status_line(self) -> str:
        ...

    def reload(self, profile: AnyProfile) -> tuple[dict[str, object], list[str]]:
        """Adopt a reloaded profile: a summary for mipctl and the keys that need a restart.
        Raises ControlError if this profile cannot be adopted (another role)."""
        ...

    def data_plane_counters(self) -> Mapping[str, int]:
        """The tunnel backend's counters (``dropped_<reason>`` among them), as ``mipctl stats`` shows them."""
        ...

    def overload_counters(self) -> Mapping[str, int]:
        """Requests shed under overload (``dropped_<reason>``), summarised in the journal; a home
        agent's (mipd(8) "Overload protection"), empty for the other roles."""
        ...

    @property
    def control(self) -> ControlHandler:
        ...

    async def stop(self) -> None:
        """The last words before closing (a mobile node deregisters and waits a little)."""
        ...

    def close(self) -> None:
        """Remove what the role made (data plane), close its sockets. Never raises."""
        ...


class HostControl:
    """What every role answers to mipctl the same way: reload and log-level go to the host.
    Each role's control class adds status, bindings, visitors, stats and flush."""

    def __init__(self, host: Host) -> None:
        self.host = host

    async def reload(self) -> JSONObject:
        return await self.host.reload()

    async def log_level(self, level: str) -> JSONObject:
        self.host.events.set_level(level)
        return {"log_level": level}
