"""Bad input, classes 1, 5 and 6: what the user wrote is kept as written (no YAML 1.1
re-reading), typed options are read as Ansible reads them, and names the API server would refuse
are refused first, with the rule's name - in every place such input enters."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.onprem.ingress.plugins.filter.engine_objects import metallb_objects
from ansible_collections.onprem.ingress.plugins.filter.ip_ranges import range_expand, range_size
from ansible_collections.onprem.ingress.plugins.module_utils import ipam
from ansible_collections.onprem.ingress.plugins.module_utils.k8s_names import label_problem, subdomain_problem
from hypothesis import given
from hypothesis import strategies as st

from onprem_lb import legacy
from onprem_lb.config import build_config

# -- class 1: YAML 1.1 re-reading ------------------------------------------------------------------

# What YAML 1.1 turns plain text into: base-60 integers, booleans, octal, floats, dates.
RETYPED = ["64500:10", "65535:65282", "1:30", "y", "n", "yes", "off", "0777", "1e3", "2001-01-01", ".inf", "0x1F"]


@pytest.mark.parametrize("word", RETYPED)
def test_community_values_and_names_stay_as_written(word: str) -> None:
    config = f"bgp-communities:\n  {word}: {word}\n"
    [community] = legacy.convert(config)
    assert community["spec"]["communities"] == [{"name": word, "value": word}]


@given(
    st.text(alphabet="0123456789:abcdefyYnNoO._-", min_size=1, max_size=12).filter(
        lambda t: t not in ("~",) and not t.startswith(("-", ".", ":")) and ": " not in t and t[-1] != ":"
    )
)
def test_any_plain_word_in_a_label_value_or_community_is_kept_as_text(word: str) -> None:
    config = (
        f"bgp-communities:\n  c: {word}\n"
        "peers:\n- peer-address: 192.0.2.1\n  peer-asn: 64501\n  my-asn: 64500\n"
        f"  node-selectors:\n  - match-labels:\n      rack: {word}\n"
    )
    try:
        resources = legacy.convert(config)
    except legacy.ConversionError:
        return  # a word YAML itself cannot read as a plain scalar: a clear error, also fine
    by_kind = {r["kind"]: r for r in resources}
    assert by_kind["Community"]["spec"]["communities"][0]["value"] == word
    assert by_kind["BGPPeer"]["spec"]["nodeSelectors"][0]["matchLabels"]["rack"] == word


def test_typed_fields_are_converted_and_checked_with_their_key() -> None:
    config = """
address-pools:
- name: a
  protocol: bgp
  addresses: [192.0.2.0/28]
  auto-assign: "no"
  avoid-buggy-ips: yes
  bgp-advertisements:
  - {aggregation-length: 32, localpref: 0x64}
peers:
- {peer-address: 192.0.2.1, peer-asn: 64501, my-asn: "64500", peer-port: 179, hold-time: 90s, ebgp-multihop: on}
bfd-profiles:
- {name: fast, receive-interval: 300, echo-mode: false}
"""
    by_kind = {r["kind"]: r for r in legacy.convert(config)}
    assert by_kind["IPAddressPool"]["spec"] == {
        "addresses": ["192.0.2.0/28"],
        "autoAssign": False,
        "avoidBuggyIPs": True,
    }
    assert by_kind["BGPAdvertisement"]["spec"]["localPref"] == 100
    peer = by_kind["BGPPeer"]["spec"]
    assert peer["myASN"] == 64500 and peer["peerASN"] == 64501 and peer["ebgpMultiHop"] is True
    assert peer["holdTime"] == "90s"
    assert by_kind["BFDProfile"]["spec"] == {"receiveInterval": 300, "echoMode": False}


@pytest.mark.parametrize(
    ("fragment", "message"),
    [
        ("address-pools:\n- {name: a, protocol: layer2, addresses: [192.0.2.0/28], auto-assign: maybe}",
         "address-pools[0].auto-assign: 'maybe' is not true or false"),
        ("peers:\n- {peer-address: 192.0.2.1, peer-asn: 0, my-asn: 64500}",
         "peers[0].peer-asn: 0 is out of range"),
        ("peers:\n- {peer-address: 192.0.2.1, peer-asn: 1, my-asn: AS64500}",
         "peers[0].my-asn: 'AS64500' is not a whole number"),
        ("peers:\n- {peer-address: router1, peer-asn: 1, my-asn: 2}",
         "peers[0].peer-address: 'router1' is not an IP address"),
        ("peers:\n- {peer-address: 192.0.2.1, peer-asn: 1, my-asn: 2, hold-time: 90}",
         "peers[0].hold-time: '90' is not a duration"),
        ("bfd-profiles:\n- {name: f, detect-multiplier: 1}",
         "bfd-profiles[0].detect-multiplier: 1 is out of range (2-255)"),
        ("address-pools:\n- name: a\n  protocol: bgp\n  addresses: [192.0.2.0/28]\n"
         "  bgp-advertisements:\n  - {aggregation-length: 33}",
         "aggregation-length: 33 is out of range (0-32)"),
    ],
)  # fmt: skip
def test_typed_fields_name_the_key(fragment: str, message: str) -> None:
    with pytest.raises(legacy.ConversionError) as err:
        legacy.convert(fragment)
    assert message in str(err.value)


# -- class 6: names the API server would refuse ----------------------------------------------------

BAD_NAMES = [
    "My_Pool",
    "pool\n",
    "pool!",
    "-pool",
    "pool-",
    "Pool",
    "a" * 254,
    "",
    "ns with space",
    "pool..a",
    "ünïcode",
]
bad_names = st.one_of(
    st.sampled_from(BAD_NAMES), st.text(min_size=1, max_size=30).filter(lambda t: subdomain_problem(t) is not None)
)


@given(name=bad_names)
def test_bad_names_are_refused_in_every_place_they_enter(name: str) -> None:
    with pytest.raises(legacy.ConversionError, match=r"DNS-1123 subdomain|needs a name|has no name"):
        legacy.convert(
            yaml.safe_dump({"address-pools": [{"name": name, "protocol": "layer2", "addresses": ["192.0.2.0/28"]}]})
        )
    with pytest.raises(legacy.ConversionError, match=r"DNS-1123 subdomain|needs a name|has no name"):
        legacy.convert(yaml.safe_dump({"bfd-profiles": [{"name": name}]}))
    for kind in ("IPAddressPool", "L2Advertisement", "BGPPeer", "BFDProfile"):
        with pytest.raises(AnsibleFilterError, match=r"DNS-1123 subdomain|needs a name|has no name"):
            metallb_objects([{"name": name}], kind, "metallb-system")


@given(
    namespace=st.one_of(
        st.sampled_from(["Bad NS!", "metallb.system", "x" * 64, "-ns"]),
        st.text(max_size=10).filter(lambda t: label_problem(t) is not None),
    )
)
def test_bad_namespaces_are_refused(namespace: str) -> None:
    with pytest.raises(legacy.ConversionError, match="DNS-1123 label"):
        legacy.convert("", namespace=namespace)
    with pytest.raises(AnsibleFilterError, match="DNS-1123 label"):
        metallb_objects([], "IPAddressPool", namespace)


@given(st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?){0,2}\Z"))
def test_good_names_pass(name: str) -> None:
    assert subdomain_problem(name) is None
    assert metallb_objects([{"name": name}], "IPAddressPool", "metallb-system")[0]["metadata"]["name"] == name


# -- class 5: typed filter options read as Ansible reads them --------------------------------------

TRUE_WORDS = ["true", "True", "yes", "on", "1", "y", 1, True]
FALSE_WORDS = ["false", "False", "no", "off", "0", "n", 0, False]


@pytest.mark.parametrize("word", TRUE_WORDS + FALSE_WORDS)
def test_true_false_options_read_as_ansible_reads_them(word: Any) -> None:
    truth = word in TRUE_WORDS
    assert range_size(["192.0.2.0/24"], avoid_buggy_ips=word) == (254 if truth else 256)
    expanded = range_expand(["192.0.2.254/31"], avoid_buggy_ips=word)
    assert expanded == (["192.0.2.254"] if truth else ["192.0.2.254", "192.0.2.255"])


@pytest.mark.parametrize("word", ["maybe", "2", "", None, [True]])
def test_anything_else_is_named(word: Any) -> None:
    with pytest.raises(AnsibleFilterError, match=r"avoid_buggy_ips=.* is not true or false"):
        range_size(["192.0.2.0/24"], avoid_buggy_ips=word)


def test_a_limit_given_as_text_is_a_number() -> None:
    assert len(range_expand(["192.0.2.0/30"], limit="4")) == 4
    with pytest.raises(AnsibleFilterError, match="limit must be an integer"):
        range_expand(["192.0.2.0/30"], limit="four")


# -- class 8: counts that agree --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("addresses", "avoid", "family", "size"),
    [
        (["192.0.2.0/24"], False, "IPv4", 256),
        (["192.0.2.0/24"], True, "IPv4", 254),
        (["2001:db8::/64"], False, "IPv6", 2**64),
        (["2001:db8::/120"], False, "IPv6", 256),
    ],
)
def test_status_condition_and_lb_pool_info_counts_agree(
    addresses: list[str], avoid: bool, family: str, size: int
) -> None:
    pool = {"metadata": {"name": "p", "namespace": "ns", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"addresses": addresses, "avoidBuggyIPs": avoid}}  # fmt: skip
    snap = build_config([pool])
    usage = ipam.PoolUsage("p", size={"IPv4": 0, "IPv6": 0, family: size}, used={"IPv4": 0, "IPv6": 0, family: 1})
    shown = usage.shown()
    # what status and lb_pool_info show: used + free == size, within what Kubernetes stores (int64)
    if size <= ipam.MAX_SHOWN_COUNT:
        assert shown["used"][family] + shown["free"][family] == shown["size"][family] == size
    else:
        assert shown["free"][family] == shown["size"][family] == ipam.MAX_SHOWN_COUNT
    # the condition names the pool's size, with the same ceiling
    message = next(iter(snap.conditions.values())).message
    assert message.startswith(f"a pool of {ipam.count_text(size)} {family} addresses")
    assert "available" not in message  # what is free now is status.available*, never the condition


@pytest.mark.parametrize(
    ("kind", "item", "named"),
    [
        ("Community", {"name": "c", "communities": [{"name": "a", "value": 3870010}]}, "communities[0] is 3870010"),
        ("BGPAdvertisement", {"name": "b", "communities": [3870010]}, "communities[0] is 3870010"),
        (
            "L2Advertisement",
            {"name": "l", "nodeSelectors": [{"matchLabels": {"edge": True}}]},
            "matchLabels.edge is True",
        ),
        ("BGPPeer", {"name": "p", "nodeSelectors": [{"matchLabels": {"rack": 1}}]}, "matchLabels.rack is 1"),
    ],
)
def test_inventory_values_yaml_retyped_are_named_with_the_quote_to_add(
    kind: str, item: dict[str, Any], named: str
) -> None:
    """The inventory is read by Ansible's YAML 1.1 loader: what it retyped is caught, never sent."""
    with pytest.raises(AnsibleFilterError) as err:
        metallb_objects([item], kind, "metallb-system")
    assert named in str(err.value) and "quote such values" in str(err.value)
    quoted = yaml.safe_load(yaml.safe_dump(item).replace("3870010", "'64500:10'").replace(": true", ": 'true'"))
    quoted = yaml.safe_load(yaml.safe_dump(quoted).replace("rack: 1", "rack: '1'"))
    assert metallb_objects([quoted], kind, "metallb-system")
