"""Bad input, class 4: each message names the real cause and the fix, and a failure that repeats
in a retry loop is logged with growing gaps, not every 2 s forever."""

from __future__ import annotations

import logging

import httpx
import pytest
from lightkube import ApiError

from onprem_lb.config import build_config
from onprem_lb.ipam import (
    AllocationError,
    Allocator,
    IpamError,
    Pool,
    ServiceRequest,
    parse_address,
    request_from_service,
)
from onprem_lb.k8s import RepeatedFailure, explain
from tests.unit.test_ipam import service


def req(name: str, **kw: object) -> ServiceRequest:
    """The engine's own request type (the controller's side of the shared IPAM)."""
    return request_from_service(service(name, **kw))  # type: ignore[arg-type]


def api_error(code: int, message: str) -> ApiError:
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "code": code}
    request = httpx.Request("GET", "https://192.0.2.1:6443/x")
    return ApiError(request=request, response=httpx.Response(code, json=body, request=request))


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (api_error(401, "Unauthorized"), "refused our credentials (HTTP 401 Unauthorized)"),
        (api_error(403, 'leases is forbidden: User "x" cannot create'), "forbidden (HTTP 403): leases is forbidden"),
        (api_error(404, 'namespaces "metalb-system" not found'), "namespace metalb-system does not exist (HTTP 404)"),
        (api_error(500, "etcdserver: timeout"), "HTTP 500: etcdserver: timeout"),
        (httpx.ConnectError("[Errno 111] Connection refused"), "cannot reach the API server ([Errno 111]"),
    ],
)
def test_api_failures_are_explained_never_a_raw_status(exc: Exception, expected: str) -> None:
    text = explain(exc, "metalb-system")
    assert expected in text
    assert "Status(" not in text and "\n" not in text


def test_a_repeated_failure_is_logged_with_growing_gaps(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.repeated")
    failures = RepeatedFailure(logger, "lease x/y")
    with caplog.at_level(logging.INFO, logger="test.repeated"):
        # a retry every 2 s for 10 minutes: 300 failures
        for i in range(300):
            failures.failed("HTTP 401 ...", now=2.0 * i)
    logged = [r.getMessage() for r in caplog.records]
    assert 5 <= len(logged) <= 12, logged  # 0, 2, 6, 14, 30, 62, 126, 254, 510 s: not 300 lines
    assert logged[0] == "lease x/y: HTTP 401 ..."
    assert "more since the last message" in logged[-1]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="test.repeated"):
        failures.failed("HTTP 403 ...", now=700.0)  # a different failure is logged at once
        failures.ok()
    assert [r.getMessage() for r in caplog.records] == [
        "lease x/y: HTTP 403 ...",
        "lease x/y: works again after 301 failure(s)",
    ]


def pool(name: str, addresses: list[str], created: str) -> dict[str, object]:
    return {
        "metadata": {"name": name, "namespace": "ns", "creationTimestamp": created},
        "spec": {"addresses": addresses},
    }


def test_a_service_asking_for_an_ignored_pool_is_told_why() -> None:
    snap = build_config([pool("older", ["192.0.2.0/28"], "2026-01-01T00:00:00Z"),
                         pool("newer", ["192.0.2.8/29"], "2026-02-01T00:00:00Z")])  # fmt: skip
    allocator = Allocator(snap.pools)
    allocator.ignored = {r.name: c.message for r, c in snap.conditions.items() if c.status != "True"}
    with pytest.raises(AllocationError) as err:
        allocator.allocate(req("web", annotations={"metallb.io/address-pool": "newer"}))
    assert err.value.reason == "PoolIgnored"
    assert "asks for pool 'newer', which exists but is ignored: addresses 192.0.2.8/29 are also in the older" in str(
        err.value
    )
    with pytest.raises(AllocationError, match="which does not exist; known pools: older"):
        allocator.allocate(req("web", annotations={"metallb.io/address-pool": "ghost"}))


def test_held_and_requested_addresses_are_told_apart() -> None:
    allocator = Allocator([Pool.from_spec("p", {"addresses": ["192.0.2.0/28"]})])
    outside = [parse_address("198.51.100.7")]
    with pytest.raises(AllocationError, match=r"web holds 198\.51\.100\.7, which is in no pool"):
        allocator.assign(req("web"), outside, held=True)
    with pytest.raises(AllocationError, match=r"web requests 198\.51\.100\.7, which is in no pool"):
        allocator.assign(req("web"), outside)


@pytest.mark.parametrize("prefix", ["metallb.io/", "metallb.universe.tf/"])
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("192.0.2.300", "loadBalancerIPs holds '192.0.2.300', which is not an IP address"),
        ("192.0.2.5,192.0.2.6", "loadBalancerIPs holds at most one IPv4 and one IPv6 address"),
    ],
)
def test_annotation_errors_name_the_key_the_service_carries(prefix: str, value: str, expected: str) -> None:
    with pytest.raises(IpamError) as err:
        req("web", annotations={prefix + "loadBalancerIPs": value})
    assert f"{prefix}{expected}" in str(err.value)
