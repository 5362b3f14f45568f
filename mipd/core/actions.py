"""What the engines ask their adapters to do, and the datagrams they are handed.

Engines return lists of these frozen values; the runtime executes them. Within one turn of the
event loop the runtime first commits every :class:`PersistNode` (one transaction: group commit,
docs/interfaces.md "Durability"), then applies the :class:`~mipd.core.planes.DataPlane` changes, then sends
the datagrams: a reply never announces a change that a crash could still lose, and a node told
it is registered finds its tunnel already in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from ipaddress import IPv4Address
from typing import TYPE_CHECKING

from mipd.core.names import EventName
from mipd.core.planes import AnnounceHome, DataPlane, MobilePlane, VisitorPlane

if TYPE_CHECKING:
    from mipd.core.bindings import Binding
    from mipd.core.mobile_state import MobileState
    from mipd.core.visitors import Visitor


class Priority(IntEnum):
    """syslog priorities, as journald's PRIORITY field takes them."""

    ERR = 3
    WARNING = 4
    NOTICE = 5
    INFO = 6
    DEBUG = 7


@dataclass(frozen=True, slots=True)
class Datagram:
    """A UDP datagram as an adapter received it: payload and both addresses."""

    payload: bytes
    source: IPv4Address
    source_port: int
    destination: IPv4Address
    destination_port: int = 434


@dataclass(frozen=True, slots=True)
class SendDatagram:
    """Send ``payload`` over UDP from ``source`` (port ``source_port``) to ``destination``.

    ``ttl`` None leaves the system default; a mobile node sets it (255 towards a foreign agent,
    RFC 3024; 1 for a deregistration from home, RFC 5944 App. C)."""

    payload: bytes
    source: IPv4Address
    source_port: int
    destination: IPv4Address
    destination_port: int
    ttl: int | None = None


@dataclass(frozen=True, slots=True)
class Emit:
    """One journal event (mipd(8) JOURNAL).

    ``event`` is the MIP_EVENT value; ``fields`` uses the journal's field names without the
    ``MIP_`` prefix, in lower case (``home_address``, ``code``, ``reason``, ...). No key ever
    appears in them.
    """

    event: EventName
    message: str
    priority: Priority = Priority.INFO
    fields: dict[str, str | int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReplayState:
    """What replay protection remembers of one node (section 5.7)."""

    last_identification: int | None = None  # highest accepted timestamp Identification
    nonce: int | None = None  # the home agent nonce last sent to the node


@dataclass(frozen=True, slots=True)
class PersistNode:
    """Durably record everything the engine knows of one node: desired state, idempotent.

    An empty ``bindings`` with an empty ``replay`` means the node's record may be deleted.
    Binding expiry is carried as a wall-clock time so that it survives a restart.
    """

    home_address: IPv4Address
    bindings: tuple[Binding, ...]
    replay: ReplayState
    wall_offset: float  # add to a binding's monotonic ``expires`` to get wall-clock time


@dataclass(frozen=True, slots=True)
class SendToNode:
    """Send a UDP datagram to a node on the visited link, straight to its link-layer address.

    A foreign agent answers a node that is not (yet) reachable by routing: its home address is
    not on the link and must not be ARPed for (RFC 5944 4.2.2), so the frame goes to the
    link-layer source address its request came from (3.7.1).
    """

    payload: bytes
    source: IPv4Address
    source_port: int
    destination: IPv4Address
    destination_port: int
    link_address: bytes


@dataclass(frozen=True, slots=True)
class PersistVisitor:
    """Durably record a node's current visitor entry (None: delete it). Like PersistNode,
    ``wall_offset`` turns the monotonic expiry into wall-clock time."""

    home_address: IPv4Address
    visitor: Visitor | None
    wall_offset: float


@dataclass(frozen=True, slots=True)
class SendIcmp:
    """Send the ICMP message ``payload`` (checksum filled in) to ``destination`` with IP TTL ``ttl``
    on the agent's link: an Agent Advertisement or Solicitation (RFC 5944 2.1, 2.2: TTL 1)."""

    payload: bytes
    destination: IPv4Address
    ttl: int = 1


@dataclass(frozen=True, slots=True)
class PersistMobile:
    """Durably record the mobile node's registration and Identification state (docs/interfaces.md, "Durability"):
    ``state`` is the engine's frozen record (wall-clock times inside); the state adapter serialises it."""

    state: MobileState


@dataclass(frozen=True, slots=True)
class DropSource:
    """Drop UDP port 434's datagrams from ``source`` before they are queued, until ``until`` (the
    engines' clock): a repeat offender over its budget of authentication failures, no longer
    worth reading (mipd/core/budget.py). Until then, nothing from it would be processed anyway."""

    source: IPv4Address
    until: float


@dataclass(frozen=True, slots=True)
class AdmitSources:
    """What UDP port 434 admits in the kernel under a flood from spoofed sources
    (mipd/core/flood_guard.py): every datagram from ``known``, and a random ``fraction`` of all
    others; ``fraction`` 1.0 (and no ``known``): everything, as without a flood."""

    known: tuple[IPv4Address, ...]
    fraction: float


Action = (SendDatagram | Emit | PersistNode | DataPlane | SendIcmp | SendToNode | PersistVisitor | VisitorPlane
          | MobilePlane | AnnounceHome | PersistMobile | DropSource | AdmitSources)
