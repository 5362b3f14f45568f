"""What the daemon needs of a role's runtime (home agent, foreign agent, later mobile node).

The daemon (mipd.runtime.daemon) owns what every role shares: the event loop and its one timer,
the state file and the group commit, the journal, signals, reload and the control socket. A role
owns its engine and adapters, and says what to do with its actions once they are committed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from mipd.config import AnyProfile
from mipd.control.handler import ControlHandler
from mipd.control.protocol import JSONObject
from mipd.core.actions import Action

if TYPE_CHECKING:
    from mipd.runtime.daemon import Daemon


class StartError(Exception):
    """The instance cannot start; the message says why, for stderr and the journal."""


class Timed(Protocol):
    """A component driven by the daemon's one timer: an engine, the advertisements."""

    def next_timer(self) -> float | None: ...

    def on_timer(self, now: float) -> Sequence[Action]: ...


class Role(Protocol):
    """One role's runtime inside the daemon."""

    @property
    def backend(self) -> str:
        """The tunnel backend in use ("kernel", "userspace"), as status and the journal say."""
        ...

    async def start(self) -> None:
        """Open adapters, make the engine, restore its state, reconcile the data plane (StartError)."""
        ...

    def timed(self) -> list[Timed]:
        ...

    def send_now(self, action: Action) -> None:
        """An action that announces no state and need not wait for the commit (advertisements)."""
        ...

    def after_commit(self, actions: list[Action], replies: bool) -> None:
        """Carry out the turn's data-plane changes, then (if ``replies``) its datagrams. ``replies``
        is False when the commit failed: nothing may announce what was not stored."""
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

    @property
    def control(self) -> ControlHandler:
        ...

    async def stop(self) -> None:
        """The last words before closing (a mobile node deregisters and waits a little)."""
        ...

    def close(self) -> None:
        """Remove what the role made (data plane), close its sockets. Never raises."""
        ...


class DaemonControl:
    """What every role answers to mipctl the same way: reload and log-level go to the daemon.
    Each role's control class adds status, bindings, visitors, stats and flush."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    async def reload(self) -> JSONObject:
        return await self.daemon.reload()

    async def log_level(self, level: str) -> JSONObject:
        self.daemon.events.set_level(level)
        return {"log_level": level}
