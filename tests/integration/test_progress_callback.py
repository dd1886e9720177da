"""The progress callback (onprem.ingress.progress) in a real ansible-playbook run: a task that
blocks in its module and an ``until`` loop both say what they wait for and how long so far; a
JSON stdout callback's document stays whole."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PLAY = """
- name: Long waits
  hosts: localhost
  gather_facts: false
  vars:
    limit: 4
  tasks:
    - name: Wait for a file that never comes ({{ 'at most ' ~ limit ~ ' s' }})
      ansible.builtin.stat:
        path: {missing}
      register: seen
      until: seen.stat.exists
      retries: 2
      delay: 1
      ignore_errors: true
    - name: Block in the module for a while
      ansible.builtin.command: sleep 3.5
      changed_when: false
    - name: A short one
      ansible.builtin.command: "true"
      changed_when: false
"""


def run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    play = tmp_path / "play.yml"
    play.write_text(PLAY.replace("{missing}", str(tmp_path / "never")))
    full = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_CALLBACKS_ENABLED="onprem.ingress.progress", **env)
    return subprocess.run(
        ["ansible-playbook", "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={sys.executable}", str(play)],
        capture_output=True, text=True, timeout=120, env=full, check=False, cwd=tmp_path,
    )  # fmt: skip


@pytest.mark.integration
def test_long_waits_say_what_and_how_long(tmp_path: Path) -> None:
    out = run(tmp_path, ONPREM_PROGRESS_INTERVAL="1")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Callback dispatch" not in out.stdout + out.stderr, out.stderr  # no handler of ours failed
    # the until loop: the rendered name (what, and its bound), the time so far, what is left
    retries = re.findall(r"  waiting: Wait for a file that never comes \(at most 4 s\) on localhost: (\d+)s so far, "
                         r"at most about (\d+)s more", out.stdout)  # fmt: skip
    assert [left for _, left in retries] == ["2", "1"], out.stdout
    assert int(retries[-1][0]) >= 1, out.stdout
    # the task that blocks in its module: a line per second after the first, growing
    still = r"  still running: Block in the module for a while on localhost \((\d+)s so far\)"
    blocking = [int(s) for s in re.findall(still, out.stdout)]
    assert len(blocking) >= 2 and blocking == sorted(blocking) and blocking[-1] >= 2, out.stdout
    assert "A short one on" not in out.stdout  # done before its first interval: nothing said


@pytest.mark.integration
def test_silent_beside_a_json_stdout_callback(tmp_path: Path) -> None:
    out = run(tmp_path, ONPREM_PROGRESS_INTERVAL="1", ANSIBLE_STDOUT_CALLBACK="ansible.posix.json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)  # one JSON document: no line of ours in it
    assert [t["task"]["name"] for t in report["plays"][0]["tasks"]][1] == "Block in the module for a while"


@pytest.mark.integration
def test_interval_zero_keeps_only_the_retry_lines(tmp_path: Path) -> None:
    out = run(tmp_path, ONPREM_PROGRESS_INTERVAL="0")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "still running:" not in out.stdout
    assert out.stdout.count("  waiting: Wait for a file") == 2, out.stdout
