#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: onprem.ingress developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: sysctl_settings
short_description: Own one sysctl.d file, apply it now, and undo what it no longer sets
version_added: 0.1.0
description:
  - Writes exactly O(settings) into the file O(path) (the module owns the whole file) and sets
    the running kernel values to match, so the host is right now and after a reboot.
  - A setting that was in the file before and is no longer wanted is reverted, not only
    forgotten. The running value goes back to what the rest of the host's sysctl configuration
    sets for it (C(/etc/sysctl.d), C(/run/sysctl.d), C(/usr/lib/sysctl.d), C(/etc/sysctl.conf)),
    or else to the value in O(revert). Settings this file never held are not touched.
  - Every name is checked against C(/proc/sys) before anything changes; a setting for a missing
    interface fails the task with nothing applied.
  - Interface names containing dots (VLAN sub-interfaces) are written the way C(sysctl) reads
    them, with C(/) for the dot, for example C(net.ipv4.conf.eth0/100.arp_ignore).
author:
  - onprem.ingress developers (@onprem)
options:
  path:
    description: The sysctl.d file this module owns.
    type: path
    required: true
  settings:
    description:
      - The settings the file holds, in this order. An empty list removes the file.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Kernel parameter in dotted form, for example C(net.ipv4.conf.all.arp_ignore).
        type: str
        required: true
      value:
        description: The value, as C(sysctl) prints it.
        type: str
        required: true
  revert:
    description:
      - Values to restore when a setting leaves the file and no other sysctl configuration on
        the host sets it, keyed by parameter name. For a per-interface name the C(all) spelling
        is looked up too (C(net.ipv4.conf.eth0.arp_ignore) falls back to
        C(net.ipv4.conf.all.arp_ignore)'s entry).
      - A setting with no revert value keeps its running value; the module warns.
    type: dict
    default: {}
  apply:
    description: Also set the running kernel values (otherwise only the file is written).
    type: bool
    default: true
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Shows the file and the running values before and after.
    support: full
"""

EXAMPLES = r"""
- name: ARP answered only for addresses on the receiving interface, loose reverse-path filter
  onprem.ingress.sysctl_settings:
    path: /etc/sysctl.d/90-onprem-ingress.conf
    settings:
      - {name: net.ipv4.conf.all.arp_ignore, value: "1"}
      - {name: net.ipv4.conf.all.arp_announce, value: "2"}
      - {name: net.ipv4.conf.eth0/100.rp_filter, value: "2"}
    revert:
      net.ipv4.conf.all.arp_ignore: "0"
      net.ipv4.conf.all.arp_announce: "0"
"""

RETURN = r"""
file_changed:
  description: Whether the file content changed (or would, in check mode).
  returned: always
  type: bool
runtime:
  description: The running values changed (or that would change), with values before and after.
  returned: always
  type: list
  elements: dict
  sample: [{name: net.ipv4.conf.all.arp_ignore, before: "0", after: "1"}]
reverted:
  description: Names that left the file in this run.
  returned: always
  type: list
  elements: str
"""

import fnmatch
import os
import re
import tempfile
from typing import Any, Dict, List, Optional, Tuple

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.onprem.ingress.plugins.module_utils.file_input import file_problem, path_problem, shown

PROC_SYS = "/proc/sys"
# Where systemd-sysctl and `sysctl --system` read configuration, highest precedence first.
CONFIG_DIRS = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d")
LEGACY_CONFIG = "/etc/sysctl.conf"
NAME_RE = re.compile(r"^[A-Za-z0-9_]+(?:[./][A-Za-z0-9_@:+/-]+)+$")
HEADER = "# Managed by Ansible (onprem.ingress.sysctl_settings); local changes are overwritten.\n"


class SysctlError(Exception):
    pass


def canonical(name: str) -> str:
    """Dotted sysctl spelling; a name given in path form (net/ipv4/...) is converted."""
    name = name.strip()
    if "/" in name and "." not in name.split("/", 1)[0]:
        # Path form (as sysctl(8) reads it): "/" separates, dots belong to interface names.
        return ".".join(part.replace(".", "/") for part in name.split("/"))
    return name


def proc_path(name: str) -> str:
    """/proc/sys path of a dotted name (a "/" inside a component is a dot in the file name)."""
    return os.path.join(PROC_SYS, *[part.replace("/", ".") for part in canonical(name).split(".")])


def normalise(value: Any) -> str:
    """Compare values as the kernel prints them: whitespace-separated fields."""
    return " ".join(str(value).split())


def read_running(name: str) -> str:
    with open(proc_path(name)) as handle:
        return normalise(handle.read())


def write_running(name: str, value: str) -> None:
    with open(proc_path(name), "w") as handle:
        handle.write(value + "\n")


def parse_config(text: str) -> List[Tuple[str, Optional[str]]]:
    """(name, value) pairs of a sysctl.d file, in order; '-' (ignore errors) prefixes dropped.

    A line '-name' without a value (systemd 250+) excludes name from glob assignments; it is
    returned as (name, None).
    """
    pairs: List[Tuple[str, Optional[str]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if "=" not in line:
            if line.startswith("-"):
                pairs.append((canonical(line[1:]), None))
            continue
        name, value = line.split("=", 1)
        pairs.append((canonical(name.strip().lstrip("-")), normalise(value)))
    return pairs


def render(settings: List[Dict[str, str]]) -> str:
    if not settings:
        return ""
    return HEADER + "".join("%s = %s\n" % (s["name"], s["value"]) for s in settings)


def read_text(path: str) -> Optional[str]:
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def other_config_files(own_path: str) -> List[str]:
    """The host's sysctl configuration files in the order they are applied, without ours."""
    own_base = os.path.basename(own_path)
    chosen: Dict[str, str] = {}
    for directory in CONFIG_DIRS:
        try:
            entries = os.listdir(directory)
        except OSError:
            continue
        for entry in entries:
            if entry.endswith(".conf") and entry not in chosen:
                chosen[entry] = os.path.join(directory, entry)
    files = [chosen[base] for base in sorted(chosen) if base != own_base]
    legacy = os.path.realpath(LEGACY_CONFIG)
    if os.path.isfile(LEGACY_CONFIG) and legacy not in {os.path.realpath(f) for f in files}:
        files.append(LEGACY_CONFIG)
    return files


def configured_elsewhere(name: str, own_path: str) -> Optional[str]:
    """The value the rest of the host's configuration gives `name` (last match wins), or None."""
    pairs: List[Tuple[str, Optional[str]]] = []
    for path in other_config_files(own_path):
        pairs.extend(parse_config(read_text(path) or ""))
    excluded = {key for key, value in pairs if value is None}
    found = None
    for key, value in pairs:
        if value is None:
            continue
        if key == name or ("*" in key and name not in excluded and fnmatch.fnmatchcase(name, key)):
            found = value
    return found


def all_spelling(name: str) -> Optional[str]:
    """net.ipv4.conf.eth0.arp_ignore -> net.ipv4.conf.all.arp_ignore (None for other names)."""
    parts = name.split(".")
    if len(parts) == 5 and parts[0] == "net" and parts[2] == "conf":
        return ".".join([*parts[:3], "all", parts[4]])
    return None


def plan(module: AnsibleModule) -> Tuple[Optional[str], str, List[str], List[Dict[str, str]], List[str]]:
    path = module.params["path"]
    desired: List[Dict[str, str]] = []
    seen = set()
    for item in module.params["settings"]:
        name = canonical(item["name"])
        if not NAME_RE.match(name):
            raise SysctlError("%r is not a sysctl name (expected dotted form like net.ipv4.ip_forward)" % item["name"])
        value = normalise(item["value"])
        if not value or "\n" in str(item["value"]):
            raise SysctlError("%s: the value must be one line and not empty" % name)
        if name in seen:
            raise SysctlError("%s is listed twice in settings; give each parameter once" % name)
        seen.add(name)
        if not os.path.exists(proc_path(name)):
            raise SysctlError(
                "%s does not exist on this host (%s is missing): is the interface name right, "
                "or the kernel module loaded?" % (name, proc_path(name))
            )
        desired.append({"name": name, "value": value})

    old_text = read_text(path)
    old_names = [name for name, value in parse_config(old_text or "") if value is not None]
    new_text = render(desired)
    leaving = [name for name in dict.fromkeys(old_names) if name not in seen]

    runtime: List[Dict[str, str]] = []
    warnings: List[str] = []
    if module.params["apply"]:
        for item in desired:
            before = read_running(item["name"])
            if before != item["value"]:
                runtime.append({"name": item["name"], "before": before, "after": item["value"]})
        revert = {canonical(k): normalise(v) for k, v in module.params["revert"].items()}
        for name in leaving:
            if not os.path.exists(proc_path(name)):
                continue  # the interface is gone: nothing runs with that value any more
            target = configured_elsewhere(name, path)
            if target is None:
                target = revert.get(name, revert.get(all_spelling(name) or ""))
            if target is None:
                warnings.append("%s left %s; no revert value is known, its running value stays" % (name, path))
                continue
            before = read_running(name)
            if before != target:
                runtime.append({"name": name, "before": before, "after": target})
    return old_text, new_text, leaving, runtime, warnings


def write_file(module: AnsibleModule, path: str, text: str) -> None:
    if not text:
        if os.path.exists(path):
            os.unlink(path)
        return
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    fd, tmp = tempfile.mkstemp(prefix=".sysctl-", dir=directory)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, 0o644)
    module.atomic_move(tmp, path)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "settings": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {"name": {"type": "str", "required": True}, "value": {"type": "str", "required": True}},
            },
            "revert": {"type": "dict", "default": {}},
            "apply": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    path = module.params["path"]
    problem = path_problem(path)
    if problem is None and os.path.lexists(path):
        problem = file_problem(path)
    elif problem is None:
        parent = path_problem(os.path.dirname(path) or ".", directory=True)
        problem = None if parent is None else "its directory: %s" % parent
    if problem is not None:
        module.fail_json(msg="path %s: %s; name the sysctl.d file this module owns" % (shown(path), problem))
    try:
        old_text, new_text, leaving, runtime, warnings = plan(module)
    except SysctlError as exc:
        module.fail_json(msg=str(exc))
    except (IOError, OSError) as exc:
        module.fail_json(msg="cannot read the running sysctl values: %s" % exc)
    for warning in warnings:
        module.warn(warning)

    file_changed = (old_text or "") != new_text
    changed = file_changed or bool(runtime)
    result = {"changed": changed, "file_changed": file_changed, "runtime": runtime, "reverted": leaving}
    if module._diff:
        result["diff"] = [
            {"before_header": path, "after_header": path, "before": old_text or "", "after": new_text},
            {
                "before_header": "running values",
                "after_header": "running values",
                "before": "".join("%s = %s\n" % (r["name"], r["before"]) for r in runtime),
                "after": "".join("%s = %s\n" % (r["name"], r["after"]) for r in runtime),
            },
        ]
    if module.check_mode or not changed:
        module.exit_json(**result)

    try:
        if file_changed:
            write_file(module, path, new_text)
        for item in runtime:
            write_running(item["name"], item["after"])
            now = read_running(item["name"])
            if now != item["after"]:
                module.fail_json(msg="the kernel keeps %s at %s after writing %s" % (item["name"], now, item["after"]))
    except (IOError, OSError) as exc:
        module.fail_json(msg="cannot apply sysctl settings: %s (is /proc/sys writable here?)" % exc, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
