"""Shared pytest set-up: make the collection importable as ansible_collections.onprem.ingress."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COLLECTIONS = REPO / ".cache" / "collections"
_link = COLLECTIONS / "ansible_collections" / "onprem" / "ingress"
if not _link.exists():
    _link.parent.mkdir(parents=True, exist_ok=True)
    _link.symlink_to(REPO)
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))
os.environ.setdefault("ANSIBLE_COLLECTIONS_PATH", str(COLLECTIONS))

# Property tests draw the same cases on every machine and every run (a seed from each test's
# name): what CI checks is what a developer ran. A failing case found once is kept in the test
# as an @example; the drawn ones change only with the test or a new (pinned) hypothesis. No
# deadline per example: tests here do not time anything (bench/ does), and on two cores shared
# with the molecule scenarios a slow example is load, not a bug (it failed CI-like runs so).
from hypothesis import settings  # noqa: E402

settings.register_profile("repo", derandomize=True, print_blob=True, deadline=None)
settings.load_profile("repo")
