"""cli.py: errors are one clear line, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "onprem_lb", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
    )


def test_cli_errors_are_one_clear_line(tmp_path: Path) -> None:
    missing = _cli("controller", "--kubeconfig", str(tmp_path / "nope"))
    assert missing.returncode == 2
    expected = (
        f"kubeconfig {tmp_path / 'nope'} (--kubeconfig): no such file; point it at the cluster's admin kubeconfig"
        " (kubeadm: /etc/kubernetes/admin.conf)"
    )
    assert missing.stderr.strip() == f"onprem-lb controller: {expected}"
    legacy_config = "address-pools:\n- {name: a, protocol: l3, addresses: [192.0.2.0/28]}\n"
    bad = _cli("convert-configmap", "-", stdin=legacy_config)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "address-pools[0]: protocol must be layer2 or bgp, got 'l3'" in bad.stderr
    garbage = tmp_path / "kc"
    garbage.write_text("this is not a kubeconfig")
    broken = _cli("controller", "--kubeconfig", str(garbage))
    assert broken.returncode == 2 and "Traceback" not in broken.stderr and "it is a YAML scalar" in broken.stderr


def test_speaker_cli_errors_are_one_clear_line(tmp_path: Path) -> None:
    no_node = _cli("speaker", "--heartbeat-address", "192.0.2.11:7946", "--kubeconfig", str(tmp_path / "kc"))
    assert no_node.returncode == 2
    assert (
        no_node.stderr.strip()
        == "onprem-lb speaker: no node name: pass --node-name or set NODE_NAME (the Node object's name)"
    )
    bad_addr = _cli("speaker", "--node-name", "n1", "--heartbeat-address", "192.0.2.11")
    assert bad_addr.returncode == 2 and "argument --heartbeat-address: '192.0.2.11' is not HOST:PORT" in bad_addr.stderr
    empty = tmp_path / "secret"
    empty.write_text("\n")
    no_secret = _cli("speaker", "--node-name", "n1", "--heartbeat-address", "192.0.2.11:7946",
                     "--secret-file", str(empty))  # fmt: skip
    assert no_secret.returncode == 2 and f"secret file {str(empty)!r} is empty" in no_secret.stderr
    missing = _cli("speaker", "--node-name", "n1", "--heartbeat-address", "192.0.2.11:7946",
                   "--insecure-heartbeats", "--kubeconfig", str(tmp_path / "nope"))  # fmt: skip
    assert missing.returncode == 2 and "(--kubeconfig): no such file" in missing.stderr
    unsigned = _cli("speaker", "--node-name", "n1", "--heartbeat-address", "192.0.2.11:7946",
                    "--kubeconfig", str(tmp_path / "nope"))  # fmt: skip
    assert unsigned.returncode == 2
    assert "heartbeats would be unsigned: pass --secret-file FILE" in unsigned.stderr
    absent = _cli("speaker", "--node-name", "n1", "--heartbeat-address", "192.0.2.11:7946",
                  "--secret-file", str(tmp_path / "absent"))  # fmt: skip
    assert absent.returncode == 2 and str(tmp_path / "absent") in absent.stderr
    for result in (no_node, bad_addr, no_secret, missing, unsigned, absent):
        assert "Traceback" not in result.stderr
