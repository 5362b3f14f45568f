"""The roles' profiles and keys, generated into the demo's private directory (files mode 0600)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from mipd.demo.topology import FA1, FA2, HA, HOME_NETWORK, MN, REFUSED_PREFIX

ADVERTISEMENT = "advertisement_interval: 0.5\nadvertisement_lifetime: 3\n"


def _private(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(path, 0o600)
    return path


def write_profiles(directory: Path, *, reverse_tunneling: bool, registration_required: bool = False,
                   debug_agents: bool = False, mobile_networks: tuple[str, ...] = (),
                   refused_network: bool = False) -> dict[str, Path]:
    """Profiles for ``ha``, ``fa1``, ``fa2`` and ``mn`` in ``directory``; keys in ``directory/keys``.

    ``registration_required``: both foreign agents advertise R, and the node prefers a co-located care-of
    address (``care_of: colocated``), so that R is what sends it through the agents.
    ``debug_agents``: the foreign agents journal at debug (``mipd demo --breakdown``): a visitor renewed, the
    node back at an agent it left, is a debug event, and the breakdown times the relayed reply by it.
    ``mobile_networks``: the node is a mobile router for these prefixes (RFC 5177, explicit mode), and the
    home agent's entry for it lists them; ``refused_network``: the node also asks for
    :data:`~mipd.demo.topology.REFUSED_PREFIX`, which the home agent does not serve for it.
    """
    keys = directory / "keys"
    keys.mkdir(mode=0o700)
    key = {name: _private(keys / f"{name}.key", secrets.token_hex(16) + "\n") for name in ("mn-ha", "fa1", "fa2")}

    def common(name: str) -> str:
        # The state goes with the demo's directory at the end: it need not survive a power cut (mip.yaml(5)).
        return (f"state_directory: {directory / 'state' / name}\ncontrol_socket: {directory / (name + '.sock')}\n"
                "durability: process-crash\n")

    served = f", mobile_networks: [{', '.join(mobile_networks)}]" if mobile_networks else ""
    asked = (*mobile_networks, REFUSED_PREFIX) if refused_network else mobile_networks
    router = (f"mobile_networks: [{', '.join(asked)}]\nmobile_network_mode: explicit\n" if asked else "")
    texts = {
        "ha": f"role: home-agent\ninterface: home0\naddress: {HA}\nhome_network: {HOME_NETWORK}\n{ADVERTISEMENT}"
              f"mobile_nodes:\n  - {{home_address: {MN}, spi: 256, key_file: {key['mn-ha']}{served}}}\n"
              f"foreign_agents:\n  - {{address: {FA1}, spi: 500, key_file: {key['fa1']}}}\n"
              f"  - {{address: {FA2}, spi: 501, key_file: {key['fa2']}}}\n",
        "mn": f"role: mobile-node\ninterface: eth0\nhome_address: {MN}\nhome_network: {HOME_NETWORK}\n"
              f"home_agent: {HA}\nspi: 256\nkey_file: {key['mn-ha']}\nlifetime: 120\n"
              f"care_of: {'colocated' if registration_required else 'auto'}\n"
              f"reverse_tunneling: {'true' if reverse_tunneling else 'false'}\n{router}",
    }
    for n, address in ((1, FA1), (2, FA2)):
        texts[f"fa{n}"] = (f"role: foreign-agent\ninterface: visit0\ncare_of_address: {address}\n{ADVERTISEMENT}"
                           f"{'log_level: debug' if debug_agents else ''}\n"
                           f"registration_required: {'true' if registration_required else 'false'}\n"
                           f"home_agents:\n  - {{address: {HA}, spi: {499 + n}, key_file: {key[f'fa{n}']}}}\n")
    return {name: _private(directory / f"{name}.yaml", text + common(name)) for name, text in texts.items()}
