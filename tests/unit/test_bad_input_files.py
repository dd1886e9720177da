"""Bad input, the class of file paths: every place a user names a file (the engine's --kubeconfig,
--secret-file, --frr-confdir, convert-configmap FILE, control-plane --config and the secretFile and
health.caFile its settings name; the modules' kubeconfig and
sysctl_settings' path) turns what the operating system refuses - a NUL byte, an over-long name,
a name the file system encoding cannot hold, a directory, a socket or pipe, a loop of links, a
file where a directory should be, bytes that are not UTF-8 - into one line naming the option and
the value. Generated paths, so a case one machine draws is a case of the class, not a surprise;
the examples hypothesis once found are kept with @example."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from ansible_collections.onprem.ingress.plugins.module_utils import cluster
from ansible_collections.onprem.ingress.plugins.module_utils.kubeconfig import kubeconfig_problem
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from onprem_lb import file_input
from onprem_lb.control_plane import settings as cp_settings
from tests.support.ansible import run_module
from tests.unit.test_bad_input_access import run_main

KINDS = ("nul", "long part", "long path", "bad encoding", "directory", "socket", "fifo", "loop", "under a file",
         "not utf-8", "missing")  # fmt: skip


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One file system object of each awkward kind, made once."""
    root = tmp_path_factory.mktemp("bad-files")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(root / "sock"))
    os.mkfifo(root / "fifo")
    (root / "loop").symlink_to(root / "loop")
    (root / "plain").write_text("x")
    (root / "latin1").write_bytes(b"apiVersion: v1\nkind: Config # \xe9t\xe9\n")
    (root / "dir").mkdir()
    yield {
        "directory": str(root / "dir"),
        "socket": str(root / "sock"),
        "fifo": str(root / "fifo"),
        "loop": str(root / "loop"),
        "under a file": str(root / "plain" / "child"),
        "not utf-8": str(root / "latin1"),
        "missing": str(root / "nope"),
    }
    sock.close()


def bad_path(kind: str, part: str, places: dict[str, str]) -> str:
    if kind == "nul":
        cut = len(part) // 2
        return part[:cut] + "\x00" + part[cut:]
    if kind == "long part":
        return "/var/" + (part or "a") * (256 // max(1, len(part)) + 1)
    if kind == "long path":
        piece = ((part or "a") * 200)[:200]
        return "/" + "/".join([piece] * 25)
    if kind == "bad encoding":  # a lone surrogate: no file name encoding can write it
        return "/var/" + part + "\ud800"
    return places[kind]


parts = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00/"), max_size=12)
kinds = st.sampled_from(KINDS)
FILE_OPTIONS = {
    "--secret-file": ["speaker", "--node-name", "n1", "--heartbeat-address", "192.0.2.1:7946", "--secret-file"],
    "--kubeconfig": ["controller", "--kubeconfig"],
    "FILE": ["convert-configmap"],
    "--config": ["control-plane", "--check", "--config"],
}


def _named(line: str, option: str, path: str) -> bool:
    return option in line and (path in line or file_input.shown(path) in line)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(sorted(FILE_OPTIONS)), kind=kinds, part=parts)
@example(option="--secret-file", kind="nul", part="")  # drew '\x00' once on a fresh machine (issue 24)
def test_every_engine_file_option_names_itself_and_the_value(
    option: str, kind: str, part: str, places: dict[str, str]
) -> None:
    if option == "--secret-file" and kind == "not utf-8":
        kind = "directory"  # a secret is bytes: any content is one
    path = bad_path(kind, part, places)
    argv = [*FILE_OPTIONS[option], path]
    if option == "--secret-file":
        argv += ["--kubeconfig", places["missing"]]
    code, err = run_main(argv)
    assert code == 2, err
    assert "Traceback" not in err and "unexpected error" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("onprem-lb"), last
    assert _named(last, option if option != "FILE" else "file", path) or _named(last, option, path), last


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from([k for k in KINDS if k not in ("directory", "missing")]), part=parts)
def test_frr_confdir_must_be_a_directory(kind: str, part: str, places: dict[str, str]) -> None:
    path = bad_path(kind, part, places)
    if kind in ("not utf-8",):
        path = places["not utf-8"]  # a file where the directory should be
    argv = ["speaker", "--bgp", "--frr-confdir", path, "--kubeconfig", places["missing"]]
    code, err = run_main(argv)
    last = err.strip().splitlines()[-1]
    assert code == 2 and "argument --frr-confdir" in last and file_input.shown(path) in last, last


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=kinds, part=parts)
@example(kind="nul", part="")
def test_the_modules_kubeconfig_option_names_the_problem(kind: str, part: str, places: dict[str, str]) -> None:
    path = bad_path(kind, part, places)
    problem = kubeconfig_problem(path, None)
    assert problem and "\n" not in problem, problem
    with pytest.raises(cluster.ClusterError) as caught:
        cluster.connect(path, None)
    assert "(option kubeconfig)" in str(caught.value), caught.value


@pytest.mark.parametrize("kind", ["directory", "socket", "fifo", "loop", "under a file", "long part"])
def test_sysctl_settings_path_is_refused_with_nothing_written(kind: str, places: dict[str, str]) -> None:
    path = bad_path(kind, "x", places)
    before = {p: os.path.lexists(p) for p in places.values()}
    result = run_module("sysctl_settings", {"path": path, "settings": []})
    assert result.get("failed") and result["msg"].startswith("path "), result
    assert "Traceback" not in str(result.get("module_stderr", "")), result
    assert {p: os.path.lexists(p) for p in places.values()} == before


def test_a_readable_file_still_reads(tmp_path: Path) -> None:
    good = tmp_path / "secret"
    good.write_bytes(b"s3cret\n")
    assert file_input.read_file(str(good), "--secret-file", binary=True) == b"s3cret\n"
    assert file_input.path_problem(str(tmp_path), directory=True) is None
    assert file_input.path_problem(str(tmp_path / "to-be-made"), directory=True) is None


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(["secretFile", "health.caFile"]), kind=kinds, part=parts)
@example(key="secretFile", kind="nul", part="")
def test_the_control_plane_settings_name_their_file_keys(
    key: str, kind: str, part: str, places: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    if key == "secretFile" and kind == "not utf-8":
        kind = "directory"  # a secret is bytes: any content is one
    path = bad_path(kind, part, places)
    doc: dict[str, object] = {"addresses": ["192.0.2.250"], "members": [{"name": "cp1", "heartbeat": "192.0.2.1:7947"}],
                              "node": "cp1"}  # fmt: skip
    if key == "secretFile":
        doc["secretFile"] = path
    else:
        doc["health"] = {"caFile": path}
    with pytest.raises(cp_settings.SettingsError) as caught:
        cp_settings.parse(json.dumps(doc), source="cp.yaml")
    text = str(caught.value)
    assert text.startswith(f"cp.yaml: {key}") and "\n" not in text, text
