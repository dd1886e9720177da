"""k8s/client.py: what an API failure means to a user (explain), the repeated-failure log, where
the credentials come from (load_config), and the helpers every cache uses (key_of, to_plain).

tests/unit/test_bad_input_messages.py and tests/unit/test_bad_input_access.py already cover the
main explain() messages and every malformed kubeconfig shape; this file covers the branches they
leave. make_client and close_client only wrap lightkube: they talk to a live kube-apiserver and
are covered by tests/integration/test_controller.py (a refused token and a missing namespace
explained, an API server restart survived) and tests/e2e/test_l2_speaker.py.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from lightkube import ApiError, KubeConfig
from lightkube.core import resource as lkr
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from onprem_lb import k8s
from onprem_lb.k8s import client

REPO = Path(__file__).resolve().parents[3]
CRDS = REPO / "roles" / "lb_controller" / "files" / "crds"


def api_error(code: int, message: str | None = None, reason: str | None = None) -> ApiError:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code}
    if message is not None:
        body["message"] = message
    if reason is not None:
        body["reason"] = reason
    request = httpx.Request("GET", "https://192.0.2.1:6443/x")
    return ApiError(request=request, response=httpx.Response(code, json=body, request=request))


def status_error(code: int) -> httpx.HTTPStatusError:
    """What httpx raises for a refused request (lightkube's watch raises this, not ApiError)."""
    request = httpx.Request("GET", "https://192.0.2.1:6443/x")
    response = httpx.Response(code, request=request)
    return httpx.HTTPStatusError(f"HTTP {code}", request=request, response=response)


# -- explain -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "exc", "namespace", "expected"),
    [
        (
            "403 quotes the API and names the role that grants it",
            api_error(403, 'leases.coordination.k8s.io "x" is forbidden'),
            "metallb-system",
            'forbidden (HTTP 403): leases.coordination.k8s.io "x" is forbidden; this identity lacks the RBAC for it'
            " (the onprem.ingress.lb_controller role grants what the engine needs)",
        ),
        (
            "404 of a missing namespace, but no namespace given: plain HTTP 404",
            api_error(404, 'namespaces "x" not found'),
            None,
            'HTTP 404: namespaces "x" not found',
        ),
        (
            "404 of another object is not blamed on the namespace",
            api_error(404, 'leases.coordination.k8s.io "ctl" not found'),
            "metallb-system",
            'HTTP 404: leases.coordination.k8s.io "ctl" not found',
        ),
        (
            "the reason stands in for a missing message",
            api_error(500, reason="InternalError"),
            None,
            "HTTP 500: InternalError",
        ),
        ("neither message nor reason", api_error(503), None, "HTTP 503: no message"),
        ("a refused watch (httpx, not ApiError)", status_error(429), "ns", "HTTP 429: Too Many Requests"),
        ("401 through httpx too", status_error(401), "ns", "refused our credentials (HTTP 401 Unauthorized)"),
        ("a timeout without text is named by its type", TimeoutError(), None, "(TimeoutError)"),
        ("an OSError keeps its text", ConnectionResetError(104, "Connection reset by peer"), None, "Connection reset"),
    ],
)
def test_explain(case: str, exc: BaseException, namespace: str | None, expected: str) -> None:
    text = client.explain(exc, namespace)
    assert expected in text, case
    assert "\n" not in text and "Status(" not in text


@pytest.mark.parametrize("exc", [TimeoutError(), httpx.ReadTimeout("slow"), OSError("no route to host")])
def test_unreachable_says_where_to_look(exc: BaseException) -> None:
    text = client.explain(exc)
    assert text.startswith("cannot reach the API server (")
    assert text.endswith("check the server URL in the kubeconfig and the network")


# -- TRANSIENT: what the retry loops treat as "not reachable right now" --------------------------


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (httpx.ConnectError("refused"), True),
        (httpx.ReadTimeout("slow"), True),
        (httpx.RemoteProtocolError("peer closed connection"), True),
        (ConnectionResetError(), True),
        (TimeoutError(), True),
        # an answer from the API server is not "unreachable": each loop decides on its code
        (api_error(500, "boom"), False),
        (status_error(429), False),
        (ValueError("bug"), False),
    ],
)
def test_transient_errors(exc: BaseException, transient: bool) -> None:
    assert isinstance(exc, client.TRANSIENT) is transient


# -- RepeatedFailure -----------------------------------------------------------------------------


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="test.k8s.client")
    return caplog


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "test.k8s.client"]


def test_repeated_failure_gaps_double_up_to_the_ceiling(logged: pytest.LogCaptureFixture) -> None:
    failures = client.RepeatedFailure(logging.getLogger("test.k8s.client"), "watch", ceiling=8.0)
    logged_at = []
    for second in range(40):  # one failure a second
        before = len(messages(logged))
        failures.failed("HTTP 500", now=float(second))
        if len(messages(logged)) > before:
            logged_at.append(second)
    # 0, then gaps of 2, 4, 8, 8, 8 ... (the ceiling)
    assert logged_at == [0, 2, 6, 14, 22, 30, 38]
    assert messages(logged)[1] == "watch: HTTP 500 (1 more since the last message)"
    assert messages(logged)[-1] == "watch: HTTP 500 (7 more since the last message)"
    assert failures.count == 40


def test_repeated_failure_a_new_message_is_logged_at_once_and_restarts_the_gaps(
    logged: pytest.LogCaptureFixture,
) -> None:
    failures = client.RepeatedFailure(logging.getLogger("test.k8s.client"), "lease")
    failures.failed("A", now=0.0)
    failures.failed("A", now=0.5)  # silenced
    failures.failed("B", now=1.0)  # different: at once, without a count of A's repeats
    failures.failed("B", now=2.0)  # within 2 s of the change: silenced
    failures.failed("B", now=3.0)  # the gap after a change is 2 s again
    assert messages(logged) == ["lease: A", "lease: B", "lease: B (1 more since the last message)"]


def test_repeated_failure_ok_logs_recovery_once_and_resets(logged: pytest.LogCaptureFixture) -> None:
    failures = client.RepeatedFailure(logging.getLogger("test.k8s.client"), "lease")
    failures.ok()  # nothing failed: nothing to say
    assert messages(logged) == []
    failures.failed("A", now=0.0)
    failures.failed("A", now=1.0)
    failures.ok()
    failures.ok()
    failures.failed("A", now=1.5)  # the same text again, soon after: a new episode, logged at once
    assert messages(logged) == ["lease: A", "lease: works again after 2 failure(s)", "lease: A"]
    assert [r.levelno for r in logged.records] == [logging.WARNING, logging.INFO, logging.WARNING]


# -- load_config ---------------------------------------------------------------------------------


def kubeconfig(tmp_path: Path, name: str, server: str) -> str:
    data = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "lab", "cluster": {"server": server}},
            {"name": "prod", "cluster": {"server": "https://198.51.100.1:6443"}},
        ],
        "users": [{"name": "admin", "user": {"token": "t"}}],
        "contexts": [
            {"name": "lab", "context": {"cluster": "lab", "user": "admin", "namespace": "ns-lab"}},
            {"name": "prod", "context": {"cluster": "prod", "user": "admin"}},
        ],
        "current-context": "lab",
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_the_flag_wins_over_kubeconfig_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flag = kubeconfig(tmp_path, "flag", "https://192.0.2.1:6443")
    env = kubeconfig(tmp_path, "env", "https://192.0.2.2:6443")
    monkeypatch.setenv("KUBECONFIG", env)
    assert client.load_config(flag).cluster.server == "https://192.0.2.1:6443"
    assert client.load_config(None).cluster.server == "https://192.0.2.2:6443"


def test_the_context_chooses_the_cluster(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path, "kc", "https://192.0.2.1:6443")
    lab = client.load_config(path)
    assert (lab.context_name, lab.namespace) == ("lab", "ns-lab")
    prod = client.load_config(path, "prod")
    assert prod.context_name == "prod" and prod.cluster.server == "https://198.51.100.1:6443"


def test_a_bad_kubeconfig_from_the_environment_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(client.KubeAccessError, match=r"\(\$KUBECONFIG\): no such file"):
        client.load_config(None)
    with pytest.raises(client.KubeAccessError, match=r"\(--kubeconfig\): no such file"):
        client.load_config(str(tmp_path / "missing"))


def test_a_file_the_library_refuses_is_one_line_with_the_fix(tmp_path: Path) -> None:
    """The structure check passes (a user entry that is text, not a mapping) but lightkube's parser
    fails on it: still a KubeAccessError naming the file and the fix, not an AttributeError."""
    data = yaml.safe_load(Path(kubeconfig(tmp_path, "kc", "https://192.0.2.1:6443")).read_text())
    data["users"][0]["user"] = "admin-token"
    path = tmp_path / "odd"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(client.KubeAccessError) as err:
        client.load_config(str(path))
    text = str(err.value)
    assert text.startswith(f"cannot use {path}: ") and text.endswith("; pass --kubeconfig PATH (and --context NAME)")
    assert "\n" not in text and err.value.__suppress_context__


def service_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point lightkube's in-cluster reader at a fake service-account directory."""
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("sa-token")
    (account / "namespace").write_text("metallb-system")
    (account / "ca.crt").write_text("")
    original = KubeConfig.from_service_account.__func__  # type: ignore[attr-defined]

    def from_fake_account(cls: type[KubeConfig], service_account: Any = account) -> KubeConfig:
        return original(cls, service_account)  # type: ignore[no-any-return]

    monkeypatch.setattr(KubeConfig, "from_service_account", classmethod(from_fake_account))
    monkeypatch.delenv("KUBECONFIG", raising=False)


def test_without_a_kubeconfig_the_service_account_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    service_account(tmp_path, monkeypatch)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    single = client.load_config(None)
    assert single.cluster.server == "https://[fd00::1]:443"
    assert single.namespace == "metallb-system"


def test_an_empty_kubeconfig_variable_means_in_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    service_account(tmp_path, monkeypatch)
    monkeypatch.setenv("KUBECONFIG", "")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    assert client.load_config(None).cluster.server == "https://10.96.0.1:443"


def test_in_cluster_outside_a_pod_says_what_to_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    service_account(tmp_path, monkeypatch)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(client.KubeAccessError) as err:
        client.load_config(None)
    text = str(err.value)
    assert text.startswith("cannot use the in-cluster service account: ")
    assert text.endswith("; pass --kubeconfig PATH (and --context NAME)")
    assert err.value.__cause__ is None and err.value.__suppress_context__  # raised "from None": one line


# -- key_of and to_plain -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("meta", "key"),
    [
        ({"name": "web", "namespace": "apps"}, "apps/web"),
        ({"name": "n1"}, "n1"),  # cluster-scoped (Nodes)
        ({"name": "n1", "namespace": ""}, "n1"),
        ({"name": "n1", "namespace": None}, "n1"),
    ],
)
def test_key_of(meta: dict[str, Any], key: str) -> None:
    assert client.key_of(meta) == key


def test_to_plain_of_a_model_gives_api_json() -> None:
    lease = Lease(
        metadata=ObjectMeta(name="speaker-n1", namespace="metallb-system"),
        spec=LeaseSpec(holderIdentity="n1", renewTime=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)),
    )
    plain = client.to_plain(lease)
    assert plain["spec"] == {"holderIdentity": "n1", "renewTime": "2026-01-02T03:04:05Z"}  # unset fields left out
    assert plain["metadata"] == {"name": "speaker-n1", "namespace": "metallb-system"}
    assert client.key_of(plain["metadata"]) == "metallb-system/speaker-n1"


def test_to_plain_of_a_generic_resource_keeps_status() -> None:
    obj = {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "ServiceL2Status",
        "metadata": {"name": "l2-0", "namespace": "metallb-system", "labels": {"metallb.io/node": "n1"}},
        "spec": {},
        "status": {"node": "n1", "interfaces": [{"name": "eth0"}]},
    }
    assert client.to_plain(k8s.ServiceL2Status.from_dict(obj)) == obj


# -- the metallb.io kinds agree with the CRDs the roles install ----------------------------------


@functools.cache
def crds() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted(CRDS.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        out[doc["spec"]["names"]["kind"]] = doc
    return out


# every metallb.io kind client.py defines, so a kind added later is checked too
KINDS = list(client.RESOURCES.values())


def test_the_kinds_are_found() -> None:
    expected = {"IPAddressPool", "L2Advertisement", "BGPAdvertisement", "BGPPeer", "Community", "BFDProfile"}
    assert expected | {"ServiceL2Status", "ServiceBGPStatus"} == {r.__name__ for r in KINDS}


@pytest.mark.parametrize("resource", KINDS, ids=lambda r: r.__name__)
def test_each_kind_matches_its_crd(resource: Any) -> None:
    info = lkr.api_info(resource)
    crd = crds()[info.resource.kind]
    assert info.resource.group == crd["spec"]["group"] == client.GROUP
    assert info.plural == crd["spec"]["names"]["plural"]
    assert crd["spec"]["scope"] == "Namespaced" and issubclass(resource, lkr.NamespacedResource)
    served = {v["name"]: v for v in crd["spec"]["versions"] if v.get("served")}
    assert info.resource.version in served, f"{info.resource.kind} {info.resource.version} is not served"


def test_service_l2_status_has_the_status_subresource_the_speaker_patches() -> None:
    crd = crds()["ServiceL2Status"]
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == lkr.api_info(k8s.ServiceL2Status).resource.version]
    assert "status" in version.get("subresources", {})
    assert lkr.api_info(k8s.ServiceL2Status.Status).action == "status"


@pytest.mark.parametrize(("code", "unanswered"), [(429, True), (500, True), (503, True), (403, False), (404, False),
                                                  (409, False)])  # fmt: skip
def test_only_an_answer_about_the_object_counts_as_one(code: int, unanswered: bool) -> None:
    """What keeps the last known value (a BGPPeer's password) through an outage: no answer, or
    an overloaded or failing API server; a 4xx is an answer about the object."""
    assert k8s.unanswered(api_error(code)) is unanswered
    assert k8s.unanswered(httpx.ConnectTimeout("no route")) and k8s.unanswered(TimeoutError())
