"""Shared testinfra set-up for the molecule scenarios (extensions/molecule/<role>/tests/).

Molecule runs these tests in its verify step with MOLECULE_* variables set. Nodes are reached
with testinfra's podman backend (`podman exec`, fast) rather than through Ansible, and a test
that needs the role applied differently runs the scenario's playbook again with
`run_playbook`, reading the result from Ansible's JSON callback.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import testinfra
import yaml

SCENARIO_DIR = Path(os.environ.get("MOLECULE_SCENARIO_DIRECTORY", Path(__file__).parent))


def lab_node_names() -> list[str]:
    """Instance names molecule's create step recorded."""
    config = os.environ.get("MOLECULE_INSTANCE_CONFIG")
    if not config or not Path(config).is_file():
        return []
    return [item["instance"] for item in yaml.safe_load(Path(config).read_text()) or []]


def node_host(name: str) -> Any:
    return testinfra.get_host(f"podman://{name}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that takes `node` runs once per lab node."""
    if "node" in metafunc.fixturenames:
        names = lab_node_names()
        if not names:
            pytest.fail("no lab nodes: run these tests through molecule (make molecule)", pytrace=False)
        metafunc.parametrize("node", [node_host(n) for n in names], ids=names)


@pytest.fixture(scope="session")
def nodes() -> list[Any]:
    return [node_host(n) for n in lab_node_names()]


@dataclass
class PlaybookRun:
    rc: int
    output: str
    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def report(self) -> str:
        """What went wrong, short: failed tasks' messages, the stats, the tail of the output."""
        failed = [f"{r.get('_host')}: {r.get('_task')}: {r.get('msg')}" for r in self.results if r.get("failed")]
        return "\n".join([f"rc={self.rc}", *failed, json.dumps(self.stats), self.output[-2000:] if not failed else ""])

    def changed(self, host: str) -> int:
        return self.stats.get(host, {}).get("changed", 0)

    def failed_messages(self) -> list[str]:
        """Messages of failed tasks, and of the failed items of looped tasks."""
        failed = [r for r in self.results if r.get("failed")]
        failed += [item for r in failed for item in r.get("results", []) if item.get("failed")]
        return [str(r.get("msg", "")) for r in failed]

    def task_results(self, task_name: str) -> list[dict[str, Any]]:
        """Results of the task of that name (role tasks are reported as "role : name")."""
        return [r for r in self.results if str(r.get("_task", "")).split(" : ")[-1] == task_name]


def run_playbook(
    playbook: str = "converge.yml",
    extra_vars: dict[str, Any] | None = None,
    *,
    check: bool = False,
    diff: bool = False,
    limit: str | None = None,
    inventory: str | None = None,
) -> PlaybookRun:
    """Run one of the scenario's playbooks (or any, by absolute path) against its inventory, as
    molecule does, or against `inventory`."""
    cmd = ["ansible-playbook", "-i", inventory or os.environ["MOLECULE_INVENTORY_FILE"], str(SCENARIO_DIR / playbook)]
    if extra_vars:
        cmd += ["--extra-vars", json.dumps(extra_vars)]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    if limit:
        cmd += ["--limit", limit]
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1")
    # JSON on stdout and nothing else: a callback enabled outside (profile_tasks) would print into it
    env.pop("ANSIBLE_CALLBACKS_ENABLED", None)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    run = PlaybookRun(rc=proc.returncode, output=proc.stdout + proc.stderr)
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return run
    run.stats = data.get("stats", {})
    for play in data.get("plays", []):
        for task in play.get("tasks", []):
            for host, result in task.get("hosts", {}).items():
                run.results.append(dict(result, _task=task["task"]["name"], _host=host))
    return run


@pytest.fixture
def playbook() -> Callable[..., PlaybookRun]:
    """`playbook(name, extra_vars, check=..., diff=...)` runs a scenario playbook."""
    return run_playbook


@pytest.fixture(scope="module")
def module_playbook() -> Callable[..., PlaybookRun]:
    """The same, for module-scoped fixtures (e.g. one that converges the inventory again)."""
    return run_playbook
