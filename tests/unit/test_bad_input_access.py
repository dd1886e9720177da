"""Bad input, class 2: every kubeconfig shape and every engine CLI option gives one line naming
the file or flag and what to change - never a traceback - in the engine and in the modules."""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_collections.onprem.ingress.plugins.module_utils import cluster
from ansible_collections.onprem.ingress.plugins.module_utils.kubeconfig import kubeconfig_problem, structure_problem
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import config as k8s_config
from lightkube import KubeConfig

from onprem_lb import cli, k8s

GOOD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "lab", "cluster": {"server": "https://192.0.2.1:6443"}}],
    "users": [{"name": "admin", "user": {"token": "t"}}],
    "contexts": [{"name": "admin@lab", "context": {"cluster": "lab", "user": "admin"}}],
    "current-context": "admin@lab",
}


def without(key: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD.items() if k != key}


# shape -> (file text, what the message must say)
SHAPES: dict[str, tuple[str, str]] = {
    "empty": ("", "it is empty"),
    "only a comment": ("# nothing\n", "it is empty"),
    "scalar": ("just text\n", "YAML scalar"),
    "number": ("42\n", "YAML scalar"),
    "list": ("- a\n- b\n", "YAML list"),
    "not YAML": ("clusters: [\n", "not valid YAML at line"),
    "no clusters": (yaml.safe_dump(without("clusters")), "it has no clusters"),
    "no users": (yaml.safe_dump(without("users")), "it has no users"),
    "no contexts": (yaml.safe_dump(without("contexts")), "it has no contexts"),
    "clusters not a list": (yaml.safe_dump(dict(GOOD, clusters={"lab": {}})), "clusters is not a list"),
    "no current context": (yaml.safe_dump(without("current-context")), "no current-context"),
    "unknown current context": (yaml.safe_dump(dict(GOOD, **{"current-context": "x"})), "no context 'x'"),
    "context naming a missing user": (
        yaml.safe_dump(dict(GOOD, contexts=[{"name": "admin@lab", "context": {"cluster": "lab", "user": "bob"}}])),
        "names user 'bob'",
    ),
    "cluster without server": (
        yaml.safe_dump(dict(GOOD, clusters=[{"name": "lab", "cluster": {}}])),
        "has no server URL",
    ),
}


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_each_kubeconfig_shape_is_named_in_the_engine_and_the_modules(shape: str, tmp_path: Path) -> None:
    text, expected = SHAPES[shape]
    path = write(tmp_path, text)
    with pytest.raises(k8s.KubeAccessError) as engine:
        k8s.load_config(path)
    assert str(engine.value).startswith(f"kubeconfig {path} (--kubeconfig): "), engine.value
    assert expected in str(engine.value)
    with pytest.raises(cluster.ClusterError) as module:
        cluster.connect(path, None)
    assert str(module.value).startswith(f"kubeconfig {path} (option kubeconfig): "), module.value
    assert expected in str(module.value)
    assert "admin kubeconfig" in str(engine.value) and "\n" not in str(engine.value)


@pytest.mark.parametrize("where", ["missing", "directory", "list"])
def test_a_missing_file_or_a_directory(where: str, tmp_path: Path) -> None:
    good = write(tmp_path, yaml.safe_dump(GOOD))
    path = {"missing": str(tmp_path / "nope"), "directory": str(tmp_path), "list": f"{good}:{tmp_path / 'other'}"}[
        where
    ]
    expected = {"missing": "no such file", "directory": "it is a directory", "list": "lists several files"}[where]
    for call, error in (
        (lambda: k8s.load_config(path), k8s.KubeAccessError),
        (lambda: cluster.connect(path, None), cluster.ClusterError),
    ):
        with pytest.raises(error, match=expected):
            call()


def test_a_wrong_context_lists_the_ones_there(tmp_path: Path) -> None:
    path = write(tmp_path, yaml.safe_dump(GOOD))
    with pytest.raises(k8s.KubeAccessError, match=r"no context 'prod'; choose one of: admin@lab"):
        k8s.load_config(path, "prod")
    assert kubeconfig_problem(path, "admin@lab") is None
    k8s.load_config(path)  # the good one loads


names = st.text(alphabet="abcxyz@-", min_size=1, max_size=6)
entries = st.lists(
    st.fixed_dictionaries(
        {"name": st.one_of(names, st.none(), st.integers())},
        optional={
            "cluster": st.one_of(
                st.none(),
                st.fixed_dictionaries(
                    {}, optional={"server": st.sampled_from(["https://192.0.2.1:6443", "", "ftp://x", 3])}
                ),
            ),
            "user": st.one_of(st.none(), st.just({"token": "t"}), st.just({})),
            "context": st.one_of(st.none(), st.fixed_dictionaries({}, optional={"cluster": names, "user": names})),
        },
    ),
    max_size=3,
)
kubeconfigs = st.one_of(
    st.none(),
    st.integers(),
    st.text(max_size=10),
    st.lists(st.integers(), max_size=2),
    st.fixed_dictionaries(
        {},
        optional={
            "clusters": st.one_of(entries, st.none(), st.text(max_size=3)),
            "users": st.one_of(entries, st.none()),
            "contexts": st.one_of(entries, st.none(), st.dictionaries(names, names, max_size=2)),
            "current-context": st.one_of(names, st.none(), st.integers()),
        },
    ),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=kubeconfigs, context=st.one_of(st.none(), names))
def test_any_shape_gives_a_message_or_loads_in_both_libraries(data: Any, context: str | None, tmp_path: Path) -> None:
    """Whatever the file holds: the check names a problem, or both client libraries accept it."""
    path = write(tmp_path, yaml.safe_dump(data))
    problem = kubeconfig_problem(path, context)
    assert problem is None or isinstance(problem, str)
    if problem is None:
        assert structure_problem(data, context) is None
        KubeConfig.from_file(path).get(context_name=context)
        k8s_config.new_client_from_config(config_file=path, context=context)
        k8s.load_config(path, context)
    else:
        with pytest.raises(k8s.KubeAccessError):
            k8s.load_config(path, context)
        with pytest.raises(cluster.ClusterError):
            cluster.connect(path, context)


# -- the engine's options ------------------------------------------------------------------------

OPTIONS = {
    "controller": ["--context", "--namespace", "--lb-class", "--identity", "--lease-name", "--lease-duration",
                   "--renew-deadline", "--retry-period", "--max-writes", "--metrics-address", "--log-level"],
    "speaker": ["--context", "--namespace", "--node-name", "--heartbeat-address", "--heartbeat-interval",
                "--dead-after", "--heartbeat-max-skew", "--secret-file",
                "--lb-class", "--lease-duration", "--renew-deadline", "--renew-period",
                "--handover-timeout", "--garp-count", "--garp-interval", "--metrics-address", "--log-level",
                "--frr-pathspace", "--frr-confdir"],
    "status": ["--context", "--namespace", "--lb-class", "--output", "--timeout"],
    "convert-configmap": ["--namespace"],
    "control-plane": ["--config", "--node-name", "--state-file", "--log-level"],
}  # fmt: skip


def run_main(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli.main(argv)
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, err.getvalue()


@settings(max_examples=400)
@given(
    command=st.sampled_from(sorted(OPTIONS)),
    data=st.data(),
    value=st.one_of(
        st.text(max_size=30),
        st.sampled_from(
            ["127.0.0.1:99999", "-1", "0", "nan", "inf", "1e9", "::1:80", "[::1]:80", "x:", ":80", "Bad_NS"]
        ),
    ),
)
def test_no_option_value_gives_a_traceback(command: str, data: st.DataObject, value: str) -> None:
    option = data.draw(st.sampled_from(OPTIONS[command]))
    argv = [command, "--kubeconfig", "/nonexistent/kubeconfig"] if command != "control-plane" else [command, "--check"]
    speaker = ["--node-name", "n1", "--heartbeat-address", "192.0.2.1:7946", "--insecure-heartbeats"]
    argv += speaker if command == "speaker" else []
    argv += [option, value]
    argv += ["/nonexistent/configmap.yaml"] if command == "convert-configmap" else []
    code, err = run_main(argv)
    assert code != 0
    assert "Traceback" not in err and "unexpected error" not in err, err
    last = err.strip().splitlines()[-1]
    # argparse names the flag; past parsing, the one line names a flag or the file
    assert last.startswith("onprem-lb") and ("--" in last or "/nonexistent/" in last), last


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["controller", "--metrics-address", "127.0.0.1:99999"],
         "argument --metrics-address: '127.0.0.1:99999': the port"),
        (["controller", "--metrics-address", "::1:7472"], "write an IPv6 address in brackets, [::1]:7472"),
        (["speaker", "--heartbeat-address", "node1"], "argument --heartbeat-address: 'node1' is not HOST:PORT"),
        (["speaker", "--garp-count", "-1"], "argument --garp-count: '-1' is not a whole number"),
        (["controller", "--max-writes", "0"], "argument --max-writes: '0' is not a whole number from 1 to 64"),
        (["controller", "--lease-duration", "nan"], "argument --lease-duration: 'nan': must be more than 0"),
        (["controller", "--namespace", "Metallb System"], "is not a DNS-1123 label"),
        (["controller", "--lease-duration", "2", "--renew-deadline", "5"],
         "--renew-deadline (5 s) must be shorter than --lease-duration (2 s)"),
        (["speaker", "--heartbeat-interval", "2", "--dead-after", "1"],
         "--heartbeat-interval (2 s) must be shorter than --dead-after (1 s)"),
    ],
)  # fmt: skip
def test_option_messages(argv: list[str], expected: str) -> None:
    code, err = run_main([*argv, "--kubeconfig", "/nonexistent"])
    assert code == 2 and expected in err, err


def test_every_option_that_takes_a_value_is_drawn() -> None:
    """OPTIONS is the parser's own list, so a new option is drawn too: every option of every
    command that takes a value, less --kubeconfig (always given; its values are drawn in
    test_bad_input_files.py)."""
    paths = {"--kubeconfig"}
    parser = cli._parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, sub in commands.choices.items():
        taking = {a.option_strings[-1] for a in sub._actions if a.option_strings and a.nargs != 0}
        assert taking - paths - {"--help"} == set(OPTIONS.get(name, [])), name
