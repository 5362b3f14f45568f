"""The home agent's decision on a mobile router's Mobile Network Prefixes (RFC 5177 section 6).

:func:`decide` takes a valid registration request (every RFC 5944 check passed) and the node's
entry of the Prefix Table (6.2.2: the prefixes configured for its home address, mip.yaml(5)
``mobile_networks``) and says which prefixes are accepted and what the reply acknowledges:

- the request carries Mobile Network Request extensions (explicit mode, 6.3), each one before
  the MN-HA authenticator that covers it: each gets an Explicit Mode Acknowledgement (sub-type
  1) with code 1, MOBNET_INVALID_PREFIX_LEN, for a prefix length of 0 or above 32 (6.6); 2,
  MOBNET_UNAUTHORIZED, for a prefix that is not one configured for the node nor inside one (6.3,
  the check against the Prefix Table); 3, MOBNET_FWDING_SETUP_FAILED, for a prefix holding the
  binding's care-of address or outer (NAT) address, or the home agent's address, which cannot be
  routed through the tunnel to that very address (6.3: forwarding cannot be set up), and for every
  prefix when the data plane cannot route prefixes to this kind of binding (the kernel backend
  nests through a foreign agent's care-of address only when the binding is GRE); 0 otherwise.
- none (implicit mode, 6.3 "pre-configured Mobile Network prefix information"): every configured
  prefix is used, each with an Implicit Mode Acknowledgement (sub-type 2), code 0 or 3 as above.
- a node with no configured prefixes that sends some is no mobile router: 148,
  HA_MOBNET_DISALLOWED (6.1); one that sends none is an ordinary mobile node (no acknowledgement).
- when no prefix at all could be accepted: 147, HA_MOBNET_ERROR (6.3), with the acknowledgements
  that say why (4.2, 5.1).

A successful reply carries at least one acknowledgement whenever prefixes are served (4.2, 6.6
"MUST"). Deregistration ignores the extensions (6.7); :func:`decide` is not asked then. The
prefix of a request is its leftmost Prefix Length bits (4.1), so host bits are cleared; the
acknowledgement repeats the prefix length and prefix as they were received.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from mipd.core.denial import Denied
from mipd.core.wire.codes import ReplyCode
from mipd.core.wire.mobile_network import (
    MobileNetworkAcknowledgement,
    MobileNetworkAcknowledgementCode,
    MobileNetworkRequest,
    MobileNetworkSubType,
)

_EXPLICIT = MobileNetworkSubType.EXPLICIT_MODE_ACKNOWLEDGEMENT
_IMPLICIT = MobileNetworkSubType.IMPLICIT_MODE_ACKNOWLEDGEMENT
Code = MobileNetworkAcknowledgementCode


@dataclass(frozen=True, slots=True)
class PrefixDecision:
    """The accepted prefixes (in order of first mention, each once) and the reply's acknowledgements."""

    accepted: tuple[IPv4Network, ...] = ()
    acknowledgements: tuple[MobileNetworkAcknowledgement, ...] = ()


NO_PREFIXES = PrefixDecision()


def requested(extensions: Iterable[object]) -> tuple[MobileNetworkRequest, ...]:
    """The Mobile Network Request extensions among ``extensions`` (the ones the MN-HA authenticator covers)."""
    return tuple(e for e in extensions if isinstance(e, MobileNetworkRequest))


def decide(requests: tuple[MobileNetworkRequest, ...], configured: tuple[IPv4Network, ...],
           unroutable: Iterable[IPv4Address], *, forwarding: bool = True) -> PrefixDecision:
    """RFC 5177 6.3 for one request: ``requests`` (explicit mode) or none (implicit), against the
    ``configured`` prefixes; ``unroutable`` are the addresses a prefix must not hold (the care-of
    address, the outer address, the home agent's). ``forwarding`` False: the data plane cannot
    route prefixes to this binding at all (every authorised one is MOBNET_FWDING_SETUP_FAILED).
    Raises :class:`Denied` with 148 or 147."""
    if not configured:
        if requests:
            raise Denied(ReplyCode.HA_MOBNET_DISALLOWED,
                         f"{len(requests)} Mobile Network Request(s) from a node with no mobile_networks configured")
        return NO_PREFIXES
    avoid = tuple(unroutable)
    accepted: list[IPv4Network] = []
    acknowledgements: list[MobileNetworkAcknowledgement] = []
    if requests:
        for request in requests:
            code, network = _check(request, configured, avoid, forwarding)
            acknowledgements.append(MobileNetworkAcknowledgement(_EXPLICIT, code, request.prefix_length,
                                                                 request.prefix))
            if network is not None and network not in accepted:
                accepted.append(network)
    else:
        for network in configured:
            code = Code.MOBNET_FWDING_SETUP_FAILED if not forwarding or _holds(network, avoid) else Code.SUCCESS
            acknowledgements.append(MobileNetworkAcknowledgement(_IMPLICIT, code, network.prefixlen,
                                                                 network.network_address))
            if code == Code.SUCCESS:
                accepted.append(network)
    if not accepted:
        codes = ", ".join(f"{a.prefix}/{a.prefix_length} {Code(a.code).name}" for a in acknowledgements)
        raise Denied(ReplyCode.HA_MOBNET_ERROR, f"no Mobile Network Prefix could be accepted ({codes})",
                     tuple(acknowledgements))
    return PrefixDecision(tuple(accepted), tuple(acknowledgements))


def _check(request: MobileNetworkRequest, configured: tuple[IPv4Network, ...],
           avoid: tuple[IPv4Address, ...], forwarding: bool) -> tuple[int, IPv4Network | None]:
    if not 0 < request.prefix_length <= 32:
        return Code.MOBNET_INVALID_PREFIX_LEN, None  # 6.6: "zero or greater than decimal 32"
    network = IPv4Network((request.prefix, request.prefix_length), strict=False)
    if not any(network.subnet_of(allowed) for allowed in configured):
        return Code.MOBNET_UNAUTHORIZED, None  # 6.3: no Prefix Table entry pairs it with the node
    if not forwarding or _holds(network, avoid):
        return Code.MOBNET_FWDING_SETUP_FAILED, None  # its route would take the tunnel's own packets
    return Code.SUCCESS, network


def _holds(network: IPv4Network, addresses: tuple[IPv4Address, ...]) -> bool:
    return any(address in network for address in addresses)
