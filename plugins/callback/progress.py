# Copyright (c) onprem.ingress contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Say how long a long task has been waiting, and for what, while it waits."""

from __future__ import annotations

DOCUMENTATION = r"""
name: progress
type: aggregate
short_description: Show how long each long-running task has been waiting
description:
  - "Long waits in C(site.yml) (a Deployment becoming available, a Lease being renewed, an
    address being allocated) run silently until they end: the default output shows nothing
    for a task that blocks inside its module, and only C(FAILED - RETRYING ... (N retries left))
    for a task that retries."
  - "With this callback enabled, a task that has run for O(interval) seconds prints a line every
    O(interval) seconds naming the task (whose name says what it waits for, and for how long at
    most) and the hosts it still runs on, with the time so far; each retry of an C(until) loop
    prints the time so far and about how long is left."
  - "It only adds lines beside the stdout callback in use; it changes no result. With a JSON
    stdout callback (C(ansible.posix.json), C(ansible.posix.jsonl)) it stays silent, so the
    output stays one JSON document."
  - "Enable it in C(ansible.cfg) with C(callbacks_enabled = onprem.ingress.progress) (the
    collection's checkout does)."
version_added: 1.0.0
requirements:
  - ansible.cfg C(callbacks_enabled = onprem.ingress.progress)
options:
  interval:
    description:
      - Seconds between two lines about a task still running, and before the first.
      - C(0) turns the lines about running tasks off (the lines about retries stay).
    type: float
    default: 30
    ini:
      - section: callback_progress
        key: interval
    env:
      - name: ONPREM_PROGRESS_INTERVAL
"""

import threading
import time
from typing import Any

from ansible import constants as C
from ansible.plugins.callback import CallbackBase


def _elapsed(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _part(result: Any, name: str) -> Any:
    """A task result's host, task or result dict: public attributes from ansible-core 2.19,
    underscored before."""
    return getattr(result, name, None) or getattr(result, f"_{name}")


class CallbackModule(CallbackBase):  # type: ignore[misc]  # ansible-core ships no type information
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "onprem.ingress.progress"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._task: tuple[str, str, float] | None = None  # (uuid, name, started) of the task in progress
        self._hosts: set[str] = set()  # hosts still running the task
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._said = 0.0  # when a line about a retry was shown: the ticker need not repeat it
        self._interval = 30.0
        self._quiet = False

    def set_options(self, task_keys: Any = None, var_options: Any = None, direct: Any = None) -> None:
        super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        self._interval = float(self.get_option("interval"))
        stdout = str(C.config.get_config_value("DEFAULT_STDOUT_CALLBACK") or "")
        self._quiet = stdout.rsplit(".", 1)[-1] in ("json", "jsonl")

    # -- the task in progress, and who still runs it -----------------------------------------

    def v2_playbook_on_task_start(self, task: Any, is_conditional: Any) -> None:
        with self._lock:
            self._task = (task._uuid, task.get_name().strip(), time.monotonic())
            self._hosts = set()
        if self._interval > 0 and self._ticker is None and not self._quiet:
            self._ticker = threading.Thread(target=self._tick, name="onprem-progress", daemon=True)
            self._ticker.start()

    def v2_playbook_on_handler_task_start(self, task: Any) -> None:
        self.v2_playbook_on_task_start(task, False)

    def v2_runner_on_start(self, host: Any, task: Any) -> None:
        with self._lock:
            self._hosts.add(host.get_name())

    def _done(self, result: Any, *args: Any, **kwargs: Any) -> None:
        with self._lock:
            self._hosts.discard(_part(result, "host").get_name())

    v2_runner_on_ok = v2_runner_on_failed = v2_runner_on_skipped = v2_runner_on_unreachable = _done

    def v2_playbook_on_stats(self, stats: Any) -> None:
        self._stop.set()

    # -- the lines -------------------------------------------------------------------------------

    def v2_runner_retry(self, result: Any) -> None:
        task, outcome = _part(result, "task"), _part(result, "result")
        with self._lock:
            started = self._task[2] if self._task and self._task[0] == task._uuid else None
        if started is None or self._quiet:
            return
        left = max(int(outcome.get("retries", 0)) - int(outcome.get("attempts", 0)), 0)
        delay = float(getattr(task, "delay", None) or 0)
        name = getattr(result, "task_name", None) or task.get_name()
        with self._lock:
            self._said = time.monotonic()
        self._display.display(
            f"  waiting: {name.strip()} on {_part(result, 'host').get_name()}: "
            f"{_elapsed(time.monotonic() - started)} so far, at most about {_elapsed(left * delay)} more"
        )

    def _tick(self) -> None:
        shown_for, last = None, 0.0  # the task last shown, and when (its start before its first line)
        while not self._stop.wait(min(self._interval, 1.0)):
            now = time.monotonic()
            with self._lock:
                task, hosts, said = self._task, sorted(self._hosts), self._said
            if task is None or not hosts:
                continue
            if task[0] != shown_for:
                shown_for, last = task[0], task[2]
            if now - max(last, said) < self._interval:
                continue
            last = now
            shown = ", ".join(hosts[:5]) + (f" and {len(hosts) - 5} more" if len(hosts) > 5 else "")
            self._display.display(f"  still running: {task[1]} on {shown} ({_elapsed(now - task[2])} so far)")
