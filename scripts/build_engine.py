#!/usr/bin/env python3
"""Build the onprem-lb engine as one executable file: a zip application (PEP 441).

    scripts/build_engine.py OUTPUT [--wheels DIR]

Why a plain zipapp and not shiv or pex: every library the engine uses is pure Python
(requirements-engine.txt; lightkube stays on 0.x because 1.x needs the compiled msgspec and
Python >= 3.10), so Python's own zipimport runs the file directly. shiv and pex unpack their
contents into a cache directory (~/.shiv, ~/.pex) on first start, which a hardened systemd unit
(ProtectSystem=strict, no home) would have to be given; this file needs nothing writable.

The build is reproducible: wheels pinned in requirements-engine.txt, entries sorted, fixed
timestamps and permissions. The same inputs give the same bytes, so re-running the deploy after
a rebuild changes nothing on the nodes. Compiled parts of wheels (PyYAML's optional libyaml
binding) are left out: zipimport cannot load them, and the pure-Python fallbacks are used on
every interpreter alike.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REQUIREMENTS = REPO / "requirements-engine.txt"
PACKAGE = REPO / "src" / "onprem_lb"
SHEBANG = b"#!/usr/bin/env python3\n"
# 1980-01-01, the earliest time a zip entry can carry: the same bytes on every build.
EPOCH = (1980, 1, 1, 0, 0, 0)
# Never shipped: compiled extensions (cannot be imported from a zip), caches, console scripts.
SKIP_SUFFIXES = (".so", ".pyd", ".pyc", ".c", ".h", ".pyx", ".pxd")
SKIP_PARTS = {"__pycache__", "tests"}

MAIN = '''\
"""onprem-lb, the load-balancer engine of onprem.ingress, as one file (run it with python3 >= 3.9)."""
import sys

if sys.version_info < (3, 9):
    sys.exit("onprem-lb needs Python 3.9 or later; this is " + sys.version.split()[0])

from onprem_lb.cli import main

sys.exit(main())
'''


def download_wheels(dest: Path) -> list[Path]:
    """The pinned wheels, from the package index or the cache in DEST (no network when warm)."""
    dest.mkdir(parents=True, exist_ok=True)
    stamp = dest / ".requirements.sha256"
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if not (stamp.is_file() and stamp.read_text() == digest):
        for old in dest.glob("*.whl"):
            old.unlink()
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
             "--only-binary=:all:", "--dest", str(dest), "--requirement", str(REQUIREMENTS)],
            check=True,
        )  # fmt: skip
        stamp.write_text(digest)
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise SystemExit(f"build_engine: no wheels in {dest}")
    return wheels


def wanted(name: str) -> bool:
    parts = name.split("/")
    if name.endswith(SKIP_SUFFIXES) or SKIP_PARTS.intersection(parts[:-1]):
        return False
    # a wheel's console scripts and headers live under NAME.data/; the engine imports none of them
    return not parts[0].endswith(".data")


def entries(wheels: list[Path]) -> dict[str, bytes]:
    """Archive name -> content: the wheels' importable files, then the engine package."""
    files: dict[str, bytes] = {}
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as whl:
            for info in whl.infolist():
                if not info.is_dir() and wanted(info.filename):
                    files[info.filename] = whl.read(info)
    for path in sorted(PACKAGE.rglob("*.py")):
        # ipam.py is a symlink into plugins/module_utils: read_bytes follows it
        files[str(path.relative_to(PACKAGE.parent))] = path.read_bytes()
    files["__main__.py"] = MAIN.encode()
    return files


def write_zipapp(output: Path, files: dict[str, bytes]) -> None:
    tmp = output.with_suffix(output.suffix + ".tmp")
    with tmp.open("wb") as raw:
        raw.write(SHEBANG)
        with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            for name in sorted(files):
                info = zipfile.ZipInfo(name, date_time=EPOCH)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, files[name], compresslevel=9)
    tmp.chmod(0o755)
    tmp.replace(output)


def main() -> int:
    parser = argparse.ArgumentParser(description="build the onprem-lb single-file engine")
    parser.add_argument("output", type=Path)
    parser.add_argument("--wheels", type=Path, default=REPO / ".cache" / "dist" / "wheels")
    args = parser.parse_args()
    files = entries(download_wheels(args.wheels))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_zipapp(args.output, files)
    digest = hashlib.sha256(args.output.read_bytes()).hexdigest()
    print(f"{args.output} {args.output.stat().st_size} bytes sha256 {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
