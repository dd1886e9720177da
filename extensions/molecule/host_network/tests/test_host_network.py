"""onprem.ingress.host_network on systemd-networkd and NetworkManager nodes: state, persistence, refusals.

Tests run in order: the converged state, persistence through networkd, drift repair with check
mode first, the refusals (nothing may change), and last the removal of what is no longer asked for.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

DROPIN = "/etc/systemd/network/10-lab-eth0.network.d/onprem-ingress.conf"
STATE = "/var/lib/onprem-ingress/host_network.json"
NODE_ADDRESSES = {  # molecule.yml host_vars
    "mol-hostnet-1": ["203.0.113.212/28", "2001:db8:208::12/64"],
    "mol-hostnet-nm": ["203.0.113.215/28", "2001:db8:208::15/64"],
}
NM_PROFILE = "/etc/NetworkManager/system-connections/lab-eth0.nmconnection"


def uses_networkmanager(node: Any) -> bool:
    return bool(node.run("systemctl is-active --quiet NetworkManager").rc == 0)


def persisted(node: Any) -> str:
    """The configuration the host's network stack reads at boot for eth0."""
    return str(node.file(NM_PROFILE if uses_networkmanager(node) else DROPIN).content_string)


def eth0(node: Any) -> dict[str, Any]:
    links = json.loads(node.check_output("ip -json address show dev eth0"))
    return dict(links[0])


def addresses(link: dict[str, Any]) -> set[str]:
    return {f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])}


def name_of(node: Any) -> str:
    return str(node.check_output("hostname"))


def test_interface_is_up_with_mtu_and_addresses(node: Any) -> None:
    link = eth0(node)
    assert "UP" in link["flags"]
    assert link["mtu"] == 9000
    assert set(NODE_ADDRESSES[name_of(node)]) <= addresses(link)
    assert any(a.startswith("203.0.113.21") and a.endswith("/28") for a in addresses(link))  # podman's own


def test_configuration_is_persisted_the_stacks_way(node: Any) -> None:
    text = persisted(node)
    if uses_networkmanager(node):
        assert "mtu=9000" in text
        assert "203.0.113.215/28" in text and "2001:db8:208::15/64" in text
        assert not node.file(DROPIN).exists
    else:
        assert "MTUBytes=9000" in text
        assert "ActivationPolicy=up" in text
        for address in NODE_ADDRESSES[name_of(node)]:
            assert f"Address={address}" in text
    assert json.loads(node.file(STATE).content_string)["addresses"]["eth0"] == NODE_ADDRESSES[name_of(node)]


def test_the_network_stack_itself_restores_the_persisted_state(node: Any) -> None:
    """What is persisted is what the stack applies: undo it by hand, let the stack reapply."""
    name = name_of(node)
    node.check_output("ip link set dev eth0 mtu 1500")
    node.check_output(f"ip address del {NODE_ADDRESSES[name][0]} dev eth0")
    if uses_networkmanager(node):
        node.check_output("nmcli connection up lab-eth0")
    else:
        node.check_output("systemctl restart systemd-networkd")
        node.check_output("networkctl reconfigure eth0")
    for _ in range(50):
        link = eth0(node)
        if link["mtu"] == 9000 and set(NODE_ADDRESSES[name]) <= addresses(link):
            break
        node.run("sleep 0.2")
    assert link["mtu"] == 9000
    assert set(NODE_ADDRESSES[name]) <= addresses(link)


def test_drift_is_reported_in_check_mode_and_repaired(playbook: Callable[..., Any], nodes: list[Any]) -> None:
    for node in nodes:
        node.check_output("ip link set dev eth0 mtu 1400")
    check = playbook(check=True, diff=True)
    assert check.rc == 0, check.report
    assert all(check.changed(n) >= 1 for n in NODE_ADDRESSES), check.report
    assert any("eth0: MTU 1400 -> 9000" in str(r.get("msg")) for r in check.results), check.report
    assert all(eth0(node)["mtu"] == 1400 for node in nodes)
    run = playbook()
    assert run.rc == 0, run.report
    assert all(eth0(node)["mtu"] == 9000 for node in nodes)


def refused(playbook: Callable[..., Any], nodes: list[Any], extra_vars: dict[str, Any], message: str) -> None:
    before = [(persisted(node), eth0(node)) for node in nodes]
    run = playbook(extra_vars=extra_vars)
    assert run.rc != 0
    assert "Traceback" not in run.output
    assert any(message in m for m in run.failed_messages()), run.report
    for node, (config, link) in zip(nodes, before, strict=True):
        assert persisted(node) == config
        assert eth0(node)["mtu"] == link["mtu"]
        assert addresses(eth0(node)) == addresses(link)


def test_missing_interface_is_refused(playbook: Callable[..., Any], nodes: list[Any]) -> None:
    interfaces = [{"name": "eth0", "mtu": 1500}, {"name": "bond0", "mtu": 9000}]
    refused(playbook, nodes, {"host_network_interfaces": interfaces}, "Interface bond0 does not exist on")


def test_mtu_beyond_the_device_is_refused(playbook: Callable[..., Any], nodes: list[Any]) -> None:
    interfaces = [{"name": "eth0", "mtu": 65536}]
    message = "MTU 65536 asked, but the device supports at most 65535"
    refused(playbook, nodes, {"host_network_interfaces": interfaces}, message)


def test_pool_address_on_a_host_is_refused(playbook: Callable[..., Any], nodes: list[Any]) -> None:
    for node in nodes:
        node.check_output("ip address add 203.0.113.218/32 dev lo")
    try:
        refused(playbook, nodes, {}, "already has 203.0.113.218/32 on lo from the load-balancer pools")
    finally:
        for node in nodes:
            node.check_output("ip address del 203.0.113.218/32 dev lo")


def test_pool_address_asked_for_is_refused(playbook: Callable[..., Any], nodes: list[Any]) -> None:
    interfaces = [{"name": "eth0", "mtu": 9000, "addresses": ["203.0.113.217/28"]}]
    refused(playbook, nodes, {"host_network_interfaces": interfaces}, "which belong to the load-balancer pools")


def test_vlan_without_kernel_support_is_refused(playbook: Callable[..., Any], nodes: list[Any]) -> None:
    """This machine's kernel has no 802.1Q: the role must say so, not half-apply."""
    interfaces = [{"name": "eth0", "mtu": 9000, "vlans": [{"id": 100, "addresses": ["2001:db8:100::1/64"]}]}]
    refused(playbook, nodes, {"host_network_interfaces": interfaces}, "cannot create VLAN interfaces")


def test_vlan_mtu_above_parent_is_refused(playbook: Callable[..., Any], nodes: list[Any]) -> None:
    interfaces = [{"name": "eth0", "mtu": 1500, "vlans": [{"id": 100, "mtu": 9000}]}]
    refused(playbook, nodes, {"host_network_interfaces": interfaces}, "its parent eth0 has MTU 1500")


def test_an_address_no_longer_asked_for_is_removed(playbook: Callable[..., Any], nodes: list[Any]) -> None:
    run = playbook(extra_vars={"host_network_interfaces": [{"name": "eth0", "mtu": 9000}]})
    assert run.rc == 0, run.report
    for node in nodes:
        assert not set(NODE_ADDRESSES[name_of(node)]) & addresses(eth0(node))
        for address in NODE_ADDRESSES[name_of(node)]:
            assert address not in persisted(node)
    again = playbook(extra_vars={"host_network_interfaces": [{"name": "eth0", "mtu": 9000}]})
    assert again.rc == 0 and all(again.changed(n) == 0 for n in NODE_ADDRESSES), again.report
