"""playbooks/doctor.yml on the converged lab: it passes and changes nothing, and it names the
node and the fault when a speaker is stopped or a node's ARP settings are wrong.

Each fault is undone in a `finally`, and the lab is healthy again when a test ends.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).parents[4]))
DOCTOR = str(REPO / "playbooks" / "doctor.yml")
INVENTORY = str(REPO / "inventories" / "lab")
NODES = ["onprem-lab-n1", "onprem-lab-n2", "onprem-lab-n3"]
API_ADDRESS = "203.0.113.161"  # the lab's control plane, on the podman network's gateway
RECOVERY_TIMEOUT = 90  # seconds for a restarted speaker to renew its Lease and doctor to pass


def on(node: str, *cmd: str) -> str:
    env = dict(os.environ, CONTAINERS_CONF=str(REPO / "lab/nodes/containers.conf"))
    proc = subprocess.run(
        ["podman", "exec", node, *cmd], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert proc.returncode == 0, f"{node}: {' '.join(cmd)}: {proc.stdout}{proc.stderr}"
    return proc.stdout


def problems(run: Any) -> list[str]:
    """The problems doctor printed, one per item of its report task."""
    report = run.task_results("Print each problem and what to do")
    return [str(item.get("msg")) for r in report for item in r.get("results", [])]


def doctor(playbook: Callable[..., Any], *, check: bool = False) -> Any:
    started = time.monotonic()
    run = playbook(DOCTOR, check=check, inventory=INVENTORY)
    print(f"doctor{' --check' if check else ''}: rc={run.rc}, {time.monotonic() - started:.1f} s")
    assert all(run.changed(n) == 0 for n in NODES), "doctor changes nothing: " + run.report
    assert "Traceback" not in run.output, run.report
    return run


def passes_within(playbook: Callable[..., Any], timeout: float) -> Any:
    """Doctor's run once it passes, or its last run when `timeout` seconds went by first."""
    deadline = time.monotonic() + timeout
    while True:  # bounded by the deadline
        run = doctor(playbook)
        if run.rc == 0 or time.monotonic() > deadline:
            return run
        time.sleep(2)


def test_doctor_passes_on_the_converged_lab_and_changes_nothing(playbook: Callable[..., Any]) -> None:
    for check in (False, True):
        run = doctor(playbook, check=check)
        assert run.rc == 0, run.report
        assert set(NODES) <= set(run.stats), run.report
        assert problems(run) == []


def test_plain_ansible_playbook_from_the_checkout_reaches_the_lab() -> None:
    """What a user types after `make lab`, with no ANSIBLE_* variable set (molecule sets several,
    ANSIBLE_CONFIG among them): the checkout's ansible.cfg finds the collection and the lab's
    connection plugin, the inventory turns pipelining on, and doctor --check passes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MOLECULE_"))}
    proc = subprocess.run(
        ["ansible-playbook", "-i", "inventories/lab", "playbooks/doctor.yml", "--check"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "was not found" not in out and "changed=0" in out, out[-4000:]


def test_doctor_names_a_stopped_speaker(playbook: Callable[..., Any]) -> None:
    on("onprem-lab-n3", "systemctl", "stop", "onprem-lb-speaker")
    try:
        run = doctor(playbook)
        assert run.rc != 0, run.report
        found = problems(run)
        assert found and all(p.startswith("onprem-lab-n3: ") for p in found), found
        assert any("speaker (onprem-lb-speaker.service) is not active" in p for p in found), found
        message = " ".join(run.failed_messages())
        assert "onprem-lab-n3" in message and "speaker" in message, run.report
        assert "`onprem-lb status --kubeconfig FILE`" in message, message  # where to look next
    finally:
        on("onprem-lab-n3", "systemctl", "start", "onprem-lb-speaker")
        recovered = passes_within(playbook, RECOVERY_TIMEOUT)  # it renews its Lease within seconds
    assert recovered.rc == 0, "doctor passes again once the speaker runs: " + recovered.report


def test_doctor_names_speakers_that_hold_by_membership(playbook: Callable[..., Any]) -> None:
    """Every node cut off from the API server (the doctor, on this machine, still reaches it): the
    speakers hold their addresses by membership past their renew deadline, and doctor says so."""
    cut = ["iptables", "-I", "OUTPUT", "-d", API_ADDRESS, "-p", "tcp", "-j", "DROP"]
    for node in NODES:
        on(node, *cut)
    try:
        time.sleep(9.0)  # past the renew deadline (6 s) and a renewal attempt's time-out
        run = doctor(playbook)
        assert run.rc != 0, run.report
        found = problems(run)
        for node in NODES:
            assert any(p.startswith(f"{node}: ") and "holds its addresses by membership" in p for p in found), found
        assert not any("so it announces nothing" in p for p in found), found
    finally:
        for node in NODES:
            on(node, "iptables", "-D", *cut[2:])
        recovered = passes_within(playbook, RECOVERY_TIMEOUT)  # the next test starts from a healthy lab
    assert recovered.rc == 0, "doctor passes again once the speakers reach the API: " + recovered.report


def test_doctor_names_a_node_that_answers_arp_for_others(playbook: Callable[..., Any]) -> None:
    key = "net.ipv4.conf.all.arp_ignore"
    before = on("onprem-lab-n2", "sysctl", "-n", key).strip()
    on("onprem-lab-n2", "sysctl", "-w", f"{key}=0")
    try:
        run = doctor(playbook)
    finally:
        on("onprem-lab-n2", "sysctl", "-w", f"{key}={before}")
    assert run.rc != 0, run.report
    found = problems(run)
    assert len(found) == 1, found
    assert found[0].startswith("onprem-lab-n2: ") and f"{key} is 0, wanted at least 1" in found[0], found
    assert "playbooks/sysctl.yml" in found[0]
    message = " ".join(run.failed_messages())
    assert "onprem-lab-n2" in message and "arp_ignore" in message, run.report
