"""What the data plane must do for a node: the engines' desired state, per home address.

The home agent engine emits one :class:`DataPlane` action whenever a node's bindings change
(accepted, renewed with other parameters, deregistered, replaced, expired, flushed, restored). It
states the whole desired state of that node, so applying it twice is harmless and a restart can
simply apply every restored node again.

An empty ``endpoints`` means the node is at home or unregistered: no tunnel, no route, no proxy
ARP. A non-empty one means: intercept the node's packets on the home link (proxy ARP, RFC 5944
4.6; the first time with gratuitous ARPs announcing our link-layer address) and send a copy
through a tunnel to each care-of address (one per simultaneous binding, 3.8.2.2 / 4.2.3).

``prefixes`` are a mobile router's accepted Mobile Network Prefixes (RFC 5177 6.1 step 4, 6.5):
routed through the same tunnel(s) as the home address while the node is away. Through a
foreign agent's care-of address (``decapsulates`` clear) a packet to a prefix is encapsulated
twice: first IP-in-IP to the router's home address (which the foreign agent delivers, RFC 5177
3: legacy foreign agents unchanged), then as any packet to the home address; to a co-located or
UDP-tunnelled care-of address it goes straight to the node. Reverse-tunnelled packets whose
inner source lies in one of them are accepted like the home address's own.

An endpoint with ``outer`` set is UDP-tunnelled (RFC 3519): its packets travel as MIP Tunnel
Data messages (type 4, next header 4) from the home agent's UDP port 434 to ``outer``, the NAT's
address and port the registration came from, rather than IP-in-IP to the care-of address.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from mipd.core.names import Location
from mipd.core.wire.registration import RequestFlags
from mipd.core.wire.tunnel import Encapsulation

HALF_BOUND = 0  # UdpTunnelEndpoint.port of a "half bound" tunnel (RFC 3519 4.6, 4.11)


@dataclass(frozen=True, slots=True)
class UdpTunnelEndpoint:
    """Where a UDP-tunnelled binding's packets go (RFC 3519 3.3): the IP source address and UDP
    source port of the registration request, i.e. the NAT's mapping of the node (or its FA).
    Port :data:`HALF_BOUND` (0): registered through a foreign agent with R (4.6), the port is
    learnt from the node's first keepalive."""

    address: IPv4Address
    port: int


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One tunnel towards a care-of address, as a binding's request asked for it."""

    care_of_address: IPv4Address
    source: IPv4Address  # the outer source: the address in the reply's Home Agent field (4.2.3)
    encapsulation: Encapsulation = Encapsulation.IPIP
    reverse: bool = False  # T: the node (or its FA) tunnels its packets back to us (RFC 3024)
    broadcast: bool = False  # B: the node wants the home link's broadcasts (4.3)
    decapsulates: bool = False  # D: co-located care-of address; the node decapsulates itself
    outer: UdpTunnelEndpoint | None = None  # RFC 3519: UDP-tunnelled to this NAT mapping (IP-in-IP inside)

    @property
    def udp(self) -> bool:
        return self.outer is not None

    @staticmethod
    def for_request(care_of_address: IPv4Address, source: IPv4Address, flags: RequestFlags,
                    outer: UdpTunnelEndpoint | None = None) -> Endpoint:
        """The endpoint a registration with ``flags`` asks for (G: GRE, M: minimal, else IP-in-IP;
        UDP-tunnelled bindings always carry IP-in-IP inside UDP)."""
        if outer is not None:
            return Endpoint(care_of_address, source, Encapsulation.IPIP, bool(flags & RequestFlags.T),
                            bool(flags & RequestFlags.B), bool(flags & RequestFlags.D), outer)
        if flags & RequestFlags.G:
            encapsulation = Encapsulation.GRE
        elif flags & RequestFlags.M:
            encapsulation = Encapsulation.MINIMAL
        else:
            encapsulation = Encapsulation.IPIP
        return Endpoint(care_of_address, source, encapsulation, bool(flags & RequestFlags.T),
                        bool(flags & RequestFlags.B), bool(flags & RequestFlags.D))


@dataclass(frozen=True, slots=True)
class DataPlane:
    """The whole desired data-plane state of the node with ``home_address``."""

    home_address: IPv4Address
    endpoints: tuple[Endpoint, ...]
    prefixes: tuple[IPv4Network, ...] = ()  # RFC 5177: the accepted Mobile Network Prefixes

    @property
    def away(self) -> bool:
        return bool(self.endpoints)

    def serves(self, source: IPv4Address) -> bool:
        """Whether a reverse-tunnelled packet from ``source`` is the node's: its home address, or
        inside one of its accepted prefixes (RFC 5177 6.5)."""
        return source == self.home_address or any(source in prefix for prefix in self.prefixes)

    def split(self) -> tuple[DataPlane, DataPlane]:
        """(the classic IP-in-IP/GRE/minimal endpoints, the UDP-tunnelled ones), each as a DataPlane."""
        classic = tuple(e for e in self.endpoints if e.outer is None)
        udp = tuple(e for e in self.endpoints if e.outer)
        return (DataPlane(self.home_address, classic, self.prefixes if classic else ()),
                DataPlane(self.home_address, udp, self.prefixes if udp else ()))


@dataclass(frozen=True, slots=True)
class Delivery:
    """How a foreign agent delivers to one visitor (RFC 5944 4.2.2, RFC 3024).

    Tunnelled packets from ``home_agent`` are decapsulated and sent to the visitor on the visited
    link by host route and a static neighbour entry for ``link_address`` (never an ARP for its
    home address). With ``reverse``, packets from the visitor's home address arriving on the link
    are tunnelled to its home agent from ``care_of_address`` with ``encapsulation``.
    """

    home_address: IPv4Address
    link_address: bytes
    home_agent: IPv4Address
    care_of_address: IPv4Address
    encapsulation: Encapsulation = Encapsulation.IPIP
    reverse: bool = False
    # RFC 3519: the home agent tunnels to us inside UDP (to our relay socket, from its port 434) and
    # we tunnel back the same way, with a keepalive after ``keepalive_interval`` idle seconds (4.9).
    udp_tunnel: bool = False
    keepalive_interval: int = 0


@dataclass(frozen=True, slots=True)
class VisitorPlane:
    """The whole desired delivery state of the visitor with ``home_address`` (None: no visitor)."""

    home_address: IPv4Address
    delivery: Delivery | None


@dataclass(frozen=True, slots=True)
class MobilePlane:
    """The mobile node's desired routing state (RFC 5944 4.6, 4.2.1).

    - ``home``: ARP for the home address as usual; the node's own routes (nothing of mipd's).
    - ``foreign-agent``: the home address kept; the default route via ``agent`` (on-link, with a
      static neighbour entry for ``agent_link_address`` taken from its advertisement), and no
      ARP at all on the link: "MUST NOT transmit any broadcast ARP Request or ARP Reply" while
      away (4.6).
    - ``colocated``: the node decapsulates what its home agent tunnels to ``care_of_address``
      (held on the interface as ``colocated``) itself; with ``reverse`` its own packets go back
      through the tunnel to ``home_agent``. With ``udp_tunnel`` both directions are MIP tunnel
      data messages on UDP (RFC 3519 3.3) between the node's registration socket and the home
      agent's port 434, and every packet from the home address goes back through it.
    - ``unknown``: away but not registered (between agents): no ARP, no mipd routes.
    - ``mobile_networks`` (RFC 5177, away only): packets from the LAN sourced in one of them go to
      the home agent through the reverse tunnel, tunnelled packets for them go to the LAN.
      Co-located (and UDP-tunnelled) the home agent tunnels them straight to the care-of address and
      the node sends them back like its own traffic; with a foreign agent they travel inside a
      second IP-in-IP tunnel between the home agent and the home address (section 7).
    """

    location: Location
    home_address: IPv4Address
    home_agent: IPv4Address
    agent: IPv4Address | None = None
    agent_link_address: bytes | None = None
    care_of_address: IPv4Address | None = None
    reverse: bool = False
    encapsulation: Encapsulation = Encapsulation.IPIP
    # RFC 3519: the home agent tunnels over UDP (its port 434 to the node's registration socket),
    # because a NAT lies between them; the node's own packets go back the same way.
    udp_tunnel: bool = False
    # RFC 5177: a mobile router's prefixes the home agent serves (acknowledged with success): while
    # away the node forwards between them (its LAN interfaces) and the tunnel, both ways (section 7).
    mobile_networks: tuple[IPv4Network, ...] = ()


@dataclass(frozen=True, slots=True)
class AnnounceHome:
    """Gratuitous ARPs for the home address with the node's own link-layer address: the first
    thing a node back home sends, before its deregistration (4.6)."""

    home_address: IPv4Address
