"""roles/<role>/README.md, written from the role's own meta/argument_specs.yml: what the role does,
how to use it, its variables (name, type, default, first sentence), and where its full page is
(docs/reference/<role>_role.rst, antsibull-docs). scripts/docs.sh runs it; `--check` there fails
when a README is not what the argument specs give now.

Usage: role_readmes.py OUTDIR   (OUTDIR/<role>/README.md for every role)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
MARKUP = [
    (re.compile(r"[OVCMP]\(([^)]*)\)"), r"`\1`"),
    (re.compile(r"I\(([^)]*)\)"), r"*\1*"),
    (re.compile(r"L\(([^,)]*),\s*([^)]*)\)"), r"[\1](\2)"),
    (re.compile(r"U\(([^)]*)\)"), r"<\1>"),
]


def plain(text: str) -> str:
    """Ansible's documentation markup as Markdown."""
    for pattern, replacement in MARKUP:
        text = pattern.sub(replacement, text)
    return " ".join(text.split())


def paragraphs(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value] if value else []
    return [plain(str(item)) for item in items]


def first_sentence(value: Any) -> str:
    text = (paragraphs(value) or [""])[0]
    end = re.search(r"(?<=\.)\s+(?=[A-Z`])", text)
    return text[: end.start()] if end else text


def default_of(option: dict[str, Any]) -> str:
    if "default" not in option:
        return "required" if option.get("required") else ""
    return f"`{yaml.safe_dump(option['default'], default_flow_style=True).strip().removesuffix('...').strip()}`"


def readme(role: str, specs: dict[str, Any]) -> str:
    main = specs["argument_specs"]["main"]
    lines = [f"# onprem.ingress.{role}", "", plain(main["short_description"]) + ".", ""]
    lines += [p + "\n" for p in paragraphs(main.get("description"))]
    lines += ["## Use", ""]
    playbook = REPO / "playbooks" / f"{role}.yml"
    if playbook.is_file():
        hosts = yaml.safe_load(playbook.read_text())[0]["hosts"]
        lines += [
            f"`site.yml` runs it in its stage; alone, with the collection's playbook (on `{hosts}`):",
            "",
            "```sh",
            f"ansible-playbook -i my-cluster onprem.ingress.{role}",
            "```",
            "",
            "or in a play of your own:",
            "",
        ]
    else:
        lines += ["No playbook of its own: the collection's other roles include it. In a play of your own:", ""]
    lines += [
        "```yaml",
        f"- name: {plain(main['short_description'])}",
        f"  hosts: {yaml.safe_load(playbook.read_text())[0]['hosts'] if playbook.is_file() else 'all'}",
        "  roles:",
        f"    - role: onprem.ingress.{role}",
        "```",
        "",
        "## Variables",
        "",
        "| variable | type | default | what it is |",
        "|---|---|---|---|",
    ]
    for name, option in sorted(main.get("options", {}).items()):
        summary = first_sentence(option.get("description")).replace("|", "\\|")
        lines.append(f"| `{name}` | {option.get('type', 'str')} | {default_of(option)} | {summary} |")
    others = sorted(k for k in specs["argument_specs"] if k != "main")
    entry_points = f" ({', '.join(others)})" if others else ""
    lines += [
        "",
        f"The full reference, with every choice and the entry points{entry_points}: "
        f"[docs/reference/{role}_role.rst](../../docs/reference/{role}_role.rst). This file is written by "
        "`scripts/docs.sh` from `meta/argument_specs.yml`; edit that, not this.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    out = Path(argv[1])
    for spec in sorted((REPO / "roles").glob("*/meta/argument_specs.yml")):
        role = spec.parent.parent.name
        (out / role).mkdir(parents=True, exist_ok=True)
        (out / role / "README.md").write_text(readme(role, yaml.safe_load(spec.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
