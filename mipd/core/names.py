"""The names of mipd's domain values: typed, where they used to be bare strings.

Each is a StrEnum, so its members are the strings the journal, the state file, mipctl and the
profiles have always carried: ``EventName.BINDING_ADDED == "binding.added"``. mipd(8) JOURNAL
documents every event and every ``packet.dropped`` reason.
"""

from __future__ import annotations

from enum import StrEnum


class EventName(StrEnum):
    """MIP_EVENT: what happened (mipd(8) JOURNAL)."""

    # Every role
    DAEMON_STARTED = "daemon.started"
    DAEMON_RELOADED = "daemon.reloaded"
    DAEMON_STOPPING = "daemon.stopping"
    DAEMON_FAILED = "daemon.failed"
    CONFIG_REJECTED = "config.rejected"
    STATE_COMMIT_FAILED = "state.commit-failed"
    DATAPLANE_FAILED = "dataplane.failed"
    PACKET_DROPPED = "packet.dropped"
    REGISTRATION_ACCEPTED = "registration.accepted"
    REGISTRATION_DENIED = "registration.denied"
    # The home agent's bindings
    BINDING_ADDED = "binding.added"
    BINDING_RENEWED = "binding.renewed"
    BINDING_REMOVED = "binding.removed"
    BINDING_EXPIRED = "binding.expired"
    # The foreign agent's visitors
    VISITOR_PENDING = "visitor.pending"
    VISITOR_ADDED = "visitor.added"
    VISITOR_RENEWED = "visitor.renewed"
    VISITOR_REMOVED = "visitor.removed"
    VISITOR_EXPIRED = "visitor.expired"
    REGISTRATION_RELAYED = "registration.relayed"
    # The mobile node
    AGENT_DISCOVERED = "agent.discovered"
    AGENT_LOST = "agent.lost"
    MOVEMENT_DETECTED = "movement.detected"
    REGISTRATION_SENT = "registration.sent"
    REGISTRATION_EXPIRED = "registration.expired"
    HOME_RETURNED = "home.returned"
    NAT_DETECTED = "nat.detected"  # the home agent tunnels over UDP (RFC 3519): a NAT lies between
    KEEPALIVE_LOST = "keepalive.lost"  # the UDP tunnel's keepalives went unanswered: registers again

    @property
    def always_written(self) -> bool:
        """Binding and visitor changes are the audit trail of who was where: written whatever the
        log level, and never rate-limited (mipd(8) JOURNAL). A renewal that changes nothing but
        the lifetime is emitted at debug priority and is then an ordinary debug entry (see
        :func:`always_written`)."""
        return self in AUDIT_TRAIL

    @property
    def verb(self) -> str:
        """What happened to the subject: "added" for binding.added."""
        return _VERBS[self]


AUDIT_TRAIL = frozenset({
    EventName.BINDING_ADDED, EventName.BINDING_RENEWED, EventName.BINDING_REMOVED, EventName.BINDING_EXPIRED,
    EventName.VISITOR_PENDING, EventName.VISITOR_ADDED, EventName.VISITOR_RENEWED, EventName.VISITOR_REMOVED,
    EventName.VISITOR_EXPIRED,
})
_VERBS = {name: name.value.partition(".")[2] for name in EventName}


_DEBUG = 7  # syslog's debug priority (actions.Priority.DEBUG; actions imports this module)


def always_written(event: object, priority: int = 6) -> bool:
    """Whether an entry of ``event`` (an EventName, or the MIP_EVENT string of an entry) at
    ``priority`` is written whatever the log level: an audit-trail event, unless it is at debug
    priority. A renewal that changes nothing but the lifetime is emitted at debug: it changes
    nothing of who is where, so it is a counter and a debug entry, not part of the trail."""
    return isinstance(event, str) and event in AUDIT_TRAIL and priority < _DEBUG


class DiscardReason(StrEnum):
    """MIP_REASON of ``packet.dropped``: why a datagram was silently discarded (counted by it)."""

    MALFORMED = "malformed"
    NOT_A_REQUEST = "not-a-request"
    NOT_A_REPLY = "not-a-reply"
    UNKNOWN_EXTENSION = "unknown-extension"
    NO_AUTH = "no-auth"
    NO_SA = "no-sa"
    BAD_AUTHENTICATOR = "bad-authenticator"
    FA_HA_WITHOUT_SA = "fa-ha-without-sa"
    BAD_FA_HA = "bad-fa-ha"
    NO_PENDING = "no-pending"
    SOURCE_OVER_BUDGET = "source-over-budget"  # a source that keeps failing authentication (core/budget.py)
    REPLY_RATE_LIMITED = "reply-rate-limited"  # a 131 or 133 not sent: its node or source had too many
    SOCKET_QUEUE = "socket-queue"  # dropped by the kernel: the socket filter of offenders, or a full queue


class Location(StrEnum):
    """Where a mobile node is, as its routing follows it (MobilePlane, mipctl status)."""

    UNKNOWN = "unknown"
    HOME = "home"
    FOREIGN_AGENT = "foreign-agent"
    COLOCATED = "colocated"


class VisitorState(StrEnum):
    """A foreign agent's visitor entry: relayed and waiting for the reply, or registered."""

    PENDING = "pending"
    ACTIVE = "active"


class NodeNatTraversal(StrEnum):
    """Whether a mobile node asks for UDP tunnelling (mip.yaml(5) ``nat_traversal``, RFC 3519)."""

    AUTO = "auto"  # with every co-located registration; the home agent decides (a NAT seen, or not)
    FORCE = "force"  # the same with F set: UDP tunnelling even where the home agent sees no NAT
    OFF = "off"


class MobileNetworkMode(StrEnum):
    """How a mobile router names its prefixes (mip.yaml(5) ``mobile_network_mode``, RFC 5177 section 5)."""

    EXPLICIT = "explicit"  # one Mobile Network Request per prefix in every registration request
    IMPLICIT = "implicit"  # none: the home agent uses the prefixes configured for the node


class CareOfMode(StrEnum):
    """How a mobile node gets its care-of address (mip.yaml(5) ``care_of``)."""

    AUTO = "auto"
    FOREIGN_AGENT = "foreign-agent"
    COLOCATED = "colocated"
