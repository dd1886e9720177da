"""Run a playbook on localhost through ansible-playbook and read its JSON callback output."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any


def run_local_playbook(playbook: Path) -> dict[str, Any]:
    """The JSON callback's document of a localhost run; fails the test when the run failed."""
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1")
    out = subprocess.run(
        ["ansible-playbook", "-i", "localhost,", "-c", "local", str(playbook)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def run_module(module: str, args: dict[str, Any], *, check: bool = False, diff: bool = False) -> dict[str, Any]:
    """One module call through `ansible` (ad hoc), result as JSON."""
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1")
    cmd = ["ansible", "localhost", "-c", "local", "-m", f"onprem.ingress.{module}", "-a", json.dumps(args)]
    cmd += ["--check"] * check + ["--diff"] * diff
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, check=False)
    try:
        report = json.loads(out.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"no JSON from ansible: {out.stdout[-2000:]} {out.stderr[-2000:]}") from None
    return report["plays"][0]["tasks"][0]["hosts"]["localhost"]  # type: ignore[no-any-return]
