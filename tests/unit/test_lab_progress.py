"""lab/lib/progress.sh, which the lab's build scripts use for their long steps: each step and,
while it runs, how long so far, on the script's stderr even when the step's output goes to a
log; the step's exit status is the function's."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = f"""
set -euo pipefail
. {REPO / "lab" / "lib" / "progress.sh"}
PROGRESS_NAME=t PROGRESS_INTERVAL=1
progress_run "first step" sh -c 'echo to-the-log; sleep 2.5' >"$1" 2>&1
if progress_run "failing step" sh -c 'exit 7'; then echo "not reached"; else echo "status $?"; fi
"""


def test_steps_say_what_and_how_long_and_keep_the_status(tmp_path: Path) -> None:
    log = tmp_path / "step.log"
    out = subprocess.run(["bash", "-c", SCRIPT, "x", str(log)], capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 0, out.stderr
    assert log.read_text() == "to-the-log\n"  # the step's own output, and only that
    lines = out.stderr.splitlines()
    assert lines[0] == "t: first step (step 1, 0s since the start)", lines
    assert "t: still first step: 1s so far" in lines and "t: still first step: 2s so far" in lines
    assert any(line.startswith("t: failing step (step 2, ") for line in lines), lines
    assert out.stdout.strip() == "status 7"
