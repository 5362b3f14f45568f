"""The mobile node as a mobile router (RFC 5177), rule by rule: what its requests carry (4.1, 5,
10), what the home agent's acknowledgements make it serve (4.2, 5), 147 and 148 (5.1), a home agent
without support (5.1), the T flag (5), and that the served prefixes reach the plane, the event, the
status property and the state file."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from mipd.adapters.state.mobile_json import from_json, to_json
from mipd.config import mobile_node_settings
from mipd.config.models import MobileNodeProfile
from mipd.core.actions import Datagram, Emit, Priority
from mipd.core.mobile_node import MobileNode
from mipd.core.names import EventName, Location, MobileNetworkMode
from mipd.core.planes import MobilePlane
from mipd.core.wire.auth import append_authentication
from mipd.core.wire.codes import ReplyCode
from mipd.core.wire.extensions import ExtensionType
from mipd.core.wire.mobile_network import (
    MobileNetworkAcknowledgement,
    MobileNetworkAcknowledgementCode,
    MobileNetworkRequest,
    MobileNetworkSubType,
)
from mipd.core.wire.registration import RegistrationReply, RegistrationRequest, RequestFlags
from tests.support.scenario import HA, KEY, MN
from tests.unit.test_mobile_node import hear, node, request_of, sends

LAN = IPv4Network("192.168.50.0/24")
CAMERAS = IPv4Network("192.168.60.0/24")
COLOCATED = IPv4Interface("192.168.4.50/24")
EXPLICIT = MobileNetworkSubType.EXPLICIT_MODE_ACKNOWLEDGEMENT
IMPLICIT = MobileNetworkSubType.IMPLICIT_MODE_ACKNOWLEDGEMENT
OK = MobileNetworkAcknowledgementCode.SUCCESS
UNAUTHORIZED = MobileNetworkAcknowledgementCode.MOBNET_UNAUTHORIZED


def router(mode: MobileNetworkMode = MobileNetworkMode.EXPLICIT, networks: tuple[IPv4Network, ...] = (LAN, CAMERAS),
           **kwargs: object) -> MobileNode:
    _, mobile = node(mobile_networks=networks, mobile_network_mode=mode, reverse_tunneling=True, **kwargs)
    return mobile


def ack(network: IPv4Network, code: int = OK, sub_type: int = EXPLICIT) -> MobileNetworkAcknowledgement:
    return MobileNetworkAcknowledgement(sub_type, code, network.prefixlen, network.network_address)


def answer(mobile: MobileNode, req: RegistrationRequest, now: float, *acks: MobileNetworkAcknowledgement,
           code: int = 0) -> list[object]:
    """The home agent's reply with ``acks`` before the MN-HA authenticator."""
    reply = RegistrationReply(code, req.lifetime, MN, HA, req.identification, acks)
    reply = append_authentication(reply, ExtensionType.MOBILE_HOME_AUTHENTICATION, 256, KEY, "hmac-md5")
    return mobile.reply(Datagram(reply.encode(), HA, 434, MN), now)  # type: ignore[return-value]


def prefixes(req: RegistrationRequest) -> list[IPv4Network]:
    return [IPv4Network(f"{e.prefix}/{e.prefix_length}") for e in req.extensions if isinstance(e, MobileNetworkRequest)]


def planes(actions: list[object]) -> list[MobilePlane]:
    return [a for a in actions if isinstance(a, MobilePlane)]


def events(actions: list[object], name: EventName) -> list[Emit]:
    return [a for a in actions if isinstance(a, Emit) and a.event == name]


def first_request(mobile: MobileNode, now: float = 0.0) -> RegistrationRequest:
    """Co-located nodes register at start; the others through a foreign agent they hear."""
    actions = mobile.start(now) if mobile.colocated is not None else hear(mobile, now)
    return request_of(sends(actions)[-1])


def test_explicit_mode_puts_one_request_per_prefix_before_the_mn_ha_authenticator() -> None:
    # RFC 5177 4.1 ("each is included in a separate Mobile Network Request extension") and 10 ("MUST be
    # included before the MN-HA Authentication extension ... in the calculation of the authenticator").
    req = first_request(router())
    assert prefixes(req) == [LAN, CAMERAS]
    types = [e.type for e in req.extensions]
    assert types == [148, 148, ExtensionType.MOBILE_HOME_AUTHENTICATION]
    assert all(e.sub_type == MobileNetworkSubType.MOBILE_NETWORK_REQUEST for e in req.extensions[:2])


def test_explicit_mode_names_the_prefixes_in_every_request_co_located_too() -> None:
    # RFC 5177 5: "includes Mobile Network Prefix information in all Registration Requests"; 5: co-located
    # or foreign-agent care-of address alike. The renewal names them again.
    mobile = router(colocated=COLOCATED)
    req = first_request(mobile)
    assert req.flags & RequestFlags.D and prefixes(req) == [LAN, CAMERAS]
    answer(mobile, req, 0.1, ack(LAN), ack(CAMERAS))
    reg = mobile.registration
    assert reg is not None
    renewal = sends(mobile.on_timer(reg.renew_at))
    assert renewal and prefixes(request_of(renewal[-1])) == [LAN, CAMERAS]


def test_implicit_mode_puts_no_request() -> None:
    # RFC 5177 5: "in implicit mode it does not include this information in any Registration Request".
    req = first_request(router(MobileNetworkMode.IMPLICIT))
    assert prefixes(req) == []


def test_a_deregistration_carries_no_mobile_network_request() -> None:
    # RFC 5177 5: "For deregistration, the Mobile Router sends a registration request with lifetime set to
    # zero without any Mobile Network Request extensions."
    mobile = router()
    req = first_request(mobile)
    answer(mobile, req, 0.1, ack(LAN), ack(CAMERAS))
    dereg = request_of(sends(mobile.stop(5.0))[-1])
    assert dereg.lifetime == 0 and prefixes(dereg) == []


def test_a_mobile_router_sets_t_in_every_request() -> None:
    # RFC 5177 5: "A Mobile Router SHOULD set the 'T' bit to 1 in all Registration Request messages";
    # mipd forces it: mobile_networks turns reverse tunnelling on whatever reverse_tunneling says by default.
    profile = MobileNodeProfile.model_validate({
        "role": "mobile-node", "interface": "eth0", "home_address": "10.1.0.10", "home_network": "10.1.0.0/24",
        "home_agent": "10.1.0.1", "spi": 256, "key": KEY.hex(), "mobile_networks": ["192.168.50.0/24"]})
    settings = mobile_node_settings(profile)
    assert settings.reverse_tunneling and settings.mobile_networks == (LAN,)
    assert settings.mobile_network_mode is MobileNetworkMode.EXPLICIT
    _, mobile = node(mobile_networks=settings.mobile_networks, reverse_tunneling=settings.reverse_tunneling)
    assert first_request(mobile).flags & RequestFlags.T  # through an agent advertising T
    _, colocated = node(mobile_networks=settings.mobile_networks, reverse_tunneling=settings.reverse_tunneling,
                        colocated=COLOCATED)
    assert first_request(colocated).flags & RequestFlags.T


def test_success_acknowledgements_decide_the_served_prefixes() -> None:
    # RFC 5177 4.2 / 5: the acknowledgements say which prefixes the home agent forwards; only those are
    # routed through the tunnel (the plane), shown (the property behind mipctl status) and logged.
    mobile = router()
    req = first_request(mobile)
    actions = answer(mobile, req, 0.1, ack(LAN), ack(CAMERAS))
    (plane,) = planes(actions)
    assert plane.location == Location.FOREIGN_AGENT and plane.mobile_networks == (LAN, CAMERAS)
    assert mobile.mobile_networks == (LAN, CAMERAS)
    (accepted,) = events(actions, EventName.REGISTRATION_ACCEPTED)
    assert accepted.fields["mobile_networks"] == "192.168.50.0/24,192.168.60.0/24"
    assert accepted.priority == Priority.INFO and "reason" not in accepted.fields


def test_a_refused_prefix_is_not_served_and_is_a_warning() -> None:
    # RFC 5177 4.2 / 6.3: code MOBNET_UNAUTHORIZED (2) for a prefix the router may not serve; the others
    # are served. The event names the refusal and its code.
    mobile = router()
    req = first_request(mobile)
    actions = answer(mobile, req, 0.1, ack(LAN), ack(CAMERAS, UNAUTHORIZED))
    assert planes(actions)[0].mobile_networks == (LAN,)
    (accepted,) = events(actions, EventName.REGISTRATION_ACCEPTED)
    assert accepted.priority == Priority.WARNING and accepted.fields["mobile_networks"] == "192.168.50.0/24"
    assert "192.168.60.0/24 (code 2 MOBNET_UNAUTHORIZED)" in str(accepted.fields["reason"])


def test_an_acknowledgement_for_a_prefix_not_asked_for_is_not_served() -> None:
    # RFC 5177 4.2: explicit acknowledgements answer the prefixes requested; one the router did not ask
    # for (or cannot read: a prefix length above 32) routes nothing to it.
    mobile = router(networks=(LAN,))
    req = first_request(mobile)
    bogus = MobileNetworkAcknowledgement(EXPLICIT, OK, 40, IPv4Address("192.168.70.0"))
    actions = answer(mobile, req, 0.1, ack(LAN), ack(CAMERAS), bogus)
    assert planes(actions)[0].mobile_networks == (LAN,)
    assert events(actions, EventName.REGISTRATION_ACCEPTED)[0].priority == Priority.WARNING


def test_success_without_acknowledgement_means_no_support_and_the_node_carries_on_as_a_host() -> None:
    # RFC 5177 5.1: "the absence of Mobile Network extensions must be interpreted by the Mobile Router as
    # the case where the Home Agent does not support Mobile Networks"; 4.2: a successful reply to a
    # router MUST carry one. Registered as a host, nothing routed for the LAN; warned once per home agent.
    mobile = router()
    req = first_request(mobile)
    actions = answer(mobile, req, 0.1)
    assert mobile.registration is not None and mobile.mobile_networks == ()
    assert planes(actions)[0].mobile_networks == ()
    (accepted,) = events(actions, EventName.REGISTRATION_ACCEPTED)
    assert accepted.priority == Priority.WARNING
    assert "does not support mobile networks" in str(accepted.fields["reason"])
    assert accepted.fields["mobile_networks"] == ""
    reg = mobile.registration
    assert reg is not None
    renewal = request_of(sends(mobile.on_timer(reg.renew_at))[-1])
    assert prefixes(renewal) == [LAN, CAMERAS]  # still asked: a skipped extension does no harm
    (again,) = events(answer(mobile, renewal, reg.renew_at + 0.1), EventName.REGISTRATION_ACCEPTED)
    assert again.priority == Priority.INFO  # said once


def test_147_stops_sending_the_failed_prefixes() -> None:
    # RFC 5177 5.1: after HA_MOBNET_ERROR the router "MUST stop sending Registration Requests that contain
    # any of the Mobile Network Prefixes" the acknowledgements name; the next request (at once) lacks them.
    mobile = router()
    req = first_request(mobile)
    # (answered after a second: the request again is not held back by the once-a-second rule)
    actions = answer(mobile, req, 1.5, ack(LAN, UNAUTHORIZED), ack(CAMERAS, UNAUTHORIZED),
                     code=ReplyCode.HA_MOBNET_ERROR)
    assert mobile.registration is None
    (denied,) = events(actions, EventName.REGISTRATION_DENIED)
    assert denied.fields["code"] == 147 and denied.priority == Priority.WARNING
    (again,) = sends(actions)
    assert prefixes(request_of(again)) == [] and again.source == MN
    later = router()
    req = first_request(later)
    (again,) = sends(answer(later, req, 1.5, ack(CAMERAS, UNAUTHORIZED), code=ReplyCode.HA_MOBNET_ERROR))
    assert prefixes(request_of(again)) == [LAN]  # only the named one is left out


def test_148_stops_sending_prefixes_to_that_home_agent() -> None:
    # RFC 5177 5.1: after HA_MOBNET_DISALLOWED the router "MUST stop sending Registration Requests with
    # any Mobile Network Prefix extensions to that Home Agent"; it registers again at once as a host.
    mobile = router()
    req = first_request(mobile)
    actions = answer(mobile, req, 1.5, code=ReplyCode.HA_MOBNET_DISALLOWED)
    (denied,) = events(actions, EventName.REGISTRATION_DENIED)
    assert denied.fields["code"] == 148 and "not permitted" in str(denied.fields["reason"])
    again = request_of(sends(actions)[-1])
    assert prefixes(again) == [] and again.lifetime > 0
    answer(mobile, again, 1.7)
    reg = mobile.registration
    assert reg is not None and mobile.mobile_networks == ()
    assert prefixes(request_of(sends(mobile.on_timer(reg.renew_at))[-1])) == []  # never again to that agent


def test_implicit_acknowledgements_serve_only_the_configured_prefixes() -> None:
    # RFC 5177 4.2: in implicit mode the acknowledgements tell "the prefixes for which the Home Agent sets up
    # forwarding"; the router forwards only those behind it (inside its mobile_networks).
    mobile = router(MobileNetworkMode.IMPLICIT, networks=(LAN,))
    req = first_request(mobile)
    inside = IPv4Network("192.168.50.0/25")
    actions = answer(mobile, req, 0.1, ack(inside, sub_type=IMPLICIT), ack(CAMERAS, sub_type=IMPLICIT))
    assert planes(actions)[0].mobile_networks == (inside,)


def test_a_host_ignores_acknowledgements() -> None:
    # Without mobile_networks the node is a host: nothing asked, nothing served, no extra event fields.
    _, mobile = node()
    req = first_request(mobile)
    assert prefixes(req) == []
    actions = answer(mobile, req, 0.1, ack(LAN))
    assert planes(actions)[0].mobile_networks == ()
    assert "mobile_networks" not in events(actions, EventName.REGISTRATION_ACCEPTED)[0].fields


def test_back_home_the_plane_routes_no_mobile_network() -> None:
    # At home the LAN is plainly routed: the home plane carries no prefixes (mip.yaml(5) mobile_networks).
    mobile = router()
    req = first_request(mobile)
    answer(mobile, req, 0.1, ack(LAN), ack(CAMERAS))
    actions = hear(mobile, 5.0, agent=HA, home=True)
    home = [p for p in planes(actions) if p.location == Location.HOME]
    assert home and home[0].mobile_networks == ()


def test_served_prefixes_survive_a_restart() -> None:
    # The registration's served prefixes are part of the stored state (docs/interfaces.md, "Durability").
    mobile = router(colocated=COLOCATED)
    req = first_request(mobile)
    answer(mobile, req, 0.1, ack(LAN))
    stored = from_json(to_json(mobile.snapshot(1.0)), HA)
    assert stored.registration is not None and stored.registration.mobile_networks == (LAN,)
    again = router(colocated=COLOCATED)
    again.restore(stored, 2.0)
    assert again.mobile_networks == (LAN,) and again.plane().mobile_networks == (LAN,)
