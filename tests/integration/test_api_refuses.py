"""Bad input, class 3: what one object can be checked for is refused at `kubectl apply` time -
by the CRDs' CEL rules and the Service annotation policy - never accepted and then refused by the
controller. Each rule is asserted with server-side dry-run, over generated inputs; and what
MetalLB accepts (a CIDR with host bits set) is accepted here too."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client
from kubernetes.client.rest import ApiException

from onprem_lb.config import build_config

V4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
V6 = st.one_of(
    st.integers(0, 2**128 - 1),
    st.integers(0, 2**16 - 1).map(lambda n: (0x20010DB8 << 96) + n),  # near neighbours share long prefixes
).map(lambda n: str(ipaddress.IPv6Address(n)))


def pool(addresses: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": "dry"},
        "spec": {"addresses": addresses},
    }


def refusal(api: client.ApiClient, namespace: str, addresses: list[str]) -> str | None:
    """The API server's message when it refuses the pool (server-side dry-run), else None."""
    objects = client.CustomObjectsApi(api)
    try:
        objects.create_namespaced_custom_object(
            "metallb.io", "v1beta1", namespace, "ipaddresspools", pool(addresses), dry_run="All"
        )
    except ApiException as exc:
        assert exc.status == 422, exc.body
        return str(exc.body)
    return None


@pytest.fixture(scope="module")
def dry_ns(api: client.ApiClient, metallb_crds: None) -> str:
    core = client.CoreV1Api(api)
    name = "t-api-refuses"
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    except ApiException as exc:
        if exc.status != 409:
            raise
    return name


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_range_is_refused_exactly_when_it_ends_before_it_starts(
    api: client.ApiClient, dry_ns: str, data: st.DataObject
) -> None:
    """At `kubectl apply` time: IPv4 by the CRD's rule, IPv6 by the onprem-lb-pool-ranges policy
    (a bit-by-bit test exceeds the CRD's static cost budget). The controller agrees."""
    v6 = data.draw(st.booleans())
    first, last = data.draw(V6 if v6 else V4), data.draw(V6 if v6 else V4)
    text = f"{first}-{last}"
    reversed_range = int(ipaddress.ip_address(first)) > int(ipaddress.ip_address(last))
    message = refusal(api, dry_ns, [text])
    if reversed_range:
        assert message is not None and "ends before it starts" in message, (text, v6)
    else:
        assert message is None, (text, message)
    snap = build_config([dict(pool([text]), metadata={"name": "dry", "namespace": dry_ns})])
    [condition] = snap.conditions.values()
    assert (condition.status == "False" and "ends before it starts" in condition.message) == reversed_range


@pytest.mark.parametrize(
    ("addresses", "refused"),
    [
        (["192.0.2.20-192.0.2.10"], "ends before it starts; write it as 192.0.2.10-192.0.2.20"),
        (["2001:db8::10-2001:db8::f"], "ends before it starts; write it as 2001:db8::f-2001:db8::10"),
        (["192.0.2.10-192.0.2.10", "2001:db8::1-2001:db8::1"], None),
        (["192.168.1.5/24"], None),  # MetalLB reads it as 192.168.1.0/24; the controller warns
        (["2001:db8::5/64"], None),
        (["192.0.2.1-2001:db8::1"], "neither a CIDR"),
    ],
)
def test_range_and_cidr_table(api: client.ApiClient, dry_ns: str, addresses: list[str], refused: str | None) -> None:
    message = refusal(api, dry_ns, addresses)
    assert (message is None) if refused is None else (message is not None and refused in message), message


def service(annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "dry", "annotations": annotations},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], "selector": {"app": "x"}},
    }


def service_refusal(api: client.ApiClient, namespace: str, annotations: dict[str, str]) -> str | None:
    try:
        client.CoreV1Api(api).create_namespaced_service(namespace, service(annotations), dry_run="All")
    except ApiException as exc:
        assert exc.status in (400, 422), exc.body
        return str(exc.body)
    return None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    key=st.sampled_from(["metallb.io/loadBalancerIPs", "metallb.universe.tf/loadBalancerIPs"]),
    addresses=st.lists(st.one_of(V4, V6), min_size=1, max_size=3),
)
def test_load_balancer_ips_hold_at_most_one_address_per_family(
    api: client.ApiClient, dry_ns: str, key: str, addresses: list[str]
) -> None:
    message = service_refusal(api, dry_ns, {key: ",".join(addresses)})
    families = [ipaddress.ip_address(a).version for a in addresses]
    if len(families) == len(set(families)):
        assert message is None, (addresses, message)
    else:
        # the message names the annotation the Service carries, legacy or not
        assert message is not None and f"{key} holds at most one IPv4 and one IPv6 address" in message, message


def test_the_policy_names_the_legacy_key(api: client.ApiClient, dry_ns: str) -> None:
    message = service_refusal(api, dry_ns, {"metallb.universe.tf/loadBalancerIPs": "banana"})
    assert message is not None and "metallb.universe.tf/loadBalancerIPs must be a comma-separated list" in message
