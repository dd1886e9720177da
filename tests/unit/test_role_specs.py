"""Every role's meta/argument_specs.yml says the same as its defaults/main.yml.

Same variables, equal defaults, a declared type for every option (and `elements` for lists)
that the default has, and Ansible's own validator accepts the defaults. A role with defaults
must have an argument spec; a role with neither (only files/) is not checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

ROLES = Path(__file__).resolve().parents[2] / "roles"

# What a value of each argument-spec type looks like in YAML (path is a string; raw is anything).
PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "path": (str,),
    "int": (int,),
    "float": (float, int),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
}


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def value_has_type(value: Any, type_name: str) -> bool:
    if type_name == "raw" or value is None:
        return True
    expected = PYTHON_TYPES.get(type_name)
    if expected is None:
        return False
    if isinstance(value, bool) and type_name != "bool":
        return False  # YAML's true is no int
    return isinstance(value, expected)


def option_problems(name: str, spec: dict[str, Any]) -> list[str]:
    """Problems in one option's own declaration (recursing into suboptions)."""
    problems = []
    type_name = spec.get("type")
    if type_name is None:
        problems.append(f"{name}: no type")
    elif type_name not in (*PYTHON_TYPES, "raw"):
        problems.append(f"{name}: unknown type {type_name!r}")
    if type_name == "list" and "elements" not in spec:
        problems.append(f"{name}: a list without elements")
    if not spec.get("description"):
        problems.append(f"{name}: no description")
    for sub_name, sub_spec in (spec.get("options") or {}).items():
        problems += option_problems(f"{name}.{sub_name}", sub_spec)
    return problems


def role_spec_problems(role: Path) -> list[str]:
    """Every way role's argument spec and defaults disagree; [] when they agree."""
    defaults = load(role / "defaults" / "main.yml")
    specs = load(role / "meta" / "argument_specs.yml")
    if defaults is None and specs is None:
        return []
    if specs is None:
        return [f"{role.name} has defaults/main.yml but no meta/argument_specs.yml"]
    defaults = defaults or {}
    options: dict[str, Any] = specs["argument_specs"]["main"].get("options") or {}
    problems = []
    for missing in sorted(set(defaults) - set(options)):
        problems.append(f"{missing}: in defaults/main.yml but not in the argument spec")
    for missing in sorted(set(options) - set(defaults)):
        problems.append(f"{missing}: in the argument spec but not in defaults/main.yml")
    for name, spec in options.items():
        problems += option_problems(name, spec)
        if name not in defaults:
            continue
        if "default" not in spec:
            problems.append(f"{name}: the argument spec gives no default (defaults/main.yml: {defaults[name]!r})")
        elif spec["default"] != defaults[name]:
            problems.append(f"{name}: default {spec['default']!r} in the spec, {defaults[name]!r} in defaults/main.yml")
        if not value_has_type(defaults[name], spec.get("type", "raw")):
            problems.append(f"{name}: default {defaults[name]!r} is not of type {spec.get('type')}")
        elements = spec.get("elements")
        if elements and isinstance(defaults[name], list):
            problems += [
                f"{name}: element {item!r} is not of type {elements}"
                for item in defaults[name]
                if not value_has_type(item, elements)
            ]
    if not problems:
        result = ArgumentSpecValidator(options).validate(defaults)
        problems += [f"Ansible rejects the defaults: {error}" for error in result.error_messages]
    return problems


def roles_with_vars() -> list[str]:
    return sorted(
        role.name
        for role in ROLES.iterdir()
        if (role / "defaults" / "main.yml").is_file() or (role / "meta" / "argument_specs.yml").is_file()
    )


def test_the_roles_of_this_issue_are_checked() -> None:
    assert {"host_network", "sysctl", "kube_proxy"} <= set(roles_with_vars())


@pytest.mark.parametrize("role", roles_with_vars())
def test_argument_spec_matches_defaults(role: str) -> None:
    assert role_spec_problems(ROLES / role) == []


def write_role(root: Path, defaults: str | None, spec: str | None) -> Path:
    role = root / "demo"
    if defaults is not None:
        (role / "defaults").mkdir(parents=True)
        (role / "defaults" / "main.yml").write_text(defaults)
    if spec is not None:
        (role / "meta").mkdir(parents=True)
        (role / "meta" / "argument_specs.yml").write_text(spec)
    return role


SPEC = """
argument_specs:
  main:
    options:
      demo_port: {type: int, default: 80, description: Port.}
      demo_names: {type: list, elements: str, default: [a], description: Names.}
"""


@pytest.mark.parametrize(
    ("defaults", "spec", "problem"),
    [
        ("demo_port: 80\n", None, "has defaults/main.yml but no meta/argument_specs.yml"),
        ("demo_port: 80\ndemo_names: [a]\ndemo_extra: 1\n", SPEC, "demo_extra: in defaults/main.yml but not in"),
        ("demo_port: 80\n", SPEC, "demo_names: in the argument spec but not in defaults/main.yml"),
        ("demo_port: 8080\ndemo_names: [a]\n", SPEC, "demo_port: default 80 in the spec, 8080 in defaults"),
        ("demo_port: 80\ndemo_names: [a]\n", SPEC.replace("type: int, ", ""), "demo_port: no type"),
        ("demo_port: 80\ndemo_names: [a]\n", SPEC.replace("elements: str, ", ""), "a list without elements"),
        (
            'demo_port: "80"\ndemo_names: [a]\n',
            SPEC.replace("default: 80", 'default: "80"'),
            "demo_port: default '80' is not of type int",
        ),
        (
            "demo_port: 80\ndemo_names: [1]\n",
            SPEC.replace("default: [a]", "default: [1]"),
            "demo_names: element 1 is not of type str",
        ),
    ],
)
def test_the_check_finds_disagreements(tmp_path: Path, defaults: str, spec: str | None, problem: str) -> None:
    problems = role_spec_problems(write_role(tmp_path, defaults, spec))
    assert any(problem in p for p in problems), problems


def test_a_role_with_only_files_is_not_checked(tmp_path: Path) -> None:
    (tmp_path / "demo" / "files").mkdir(parents=True)
    assert role_spec_problems(tmp_path / "demo") == []


def test_preflight_checks_the_variables_of_every_role() -> None:
    """playbooks/preflight.yml lists the roles whose `<role>_` variables it knows: all of them,
    so a new role's variables are never refused as unknown (nor a typo in them let through)."""
    plays = load(ROLES.parent / "playbooks" / "preflight.yml")
    listed = [v["__onprem_roles"] for play in plays for v in [play.get("vars") or {}] if "__onprem_roles" in v]
    assert listed and sorted(listed[0]) == sorted(p.name for p in ROLES.iterdir() if (p / "meta").is_dir())
