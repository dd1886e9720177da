# -*- coding: utf-8 -*-
# Copyright: onprem.ingress developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What is wrong with a kubeconfig, in one line that names the file and what to change.

The Kubernetes client libraries fail on a malformed kubeconfig with whatever their parser hits
first (``'NoneType' object has no attribute 'get'``, ``KeyError: 'clusters'``). The engine
(src/onprem_lb/kubeconfig.py is this file) and the modules check the file with
:func:`kubeconfig_problem` before handing it to them. Standard library and PyYAML only; Python
3.9 syntax (the engine runs on the nodes' python3).
"""

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

import os
from typing import Any, Dict, List, Optional

from .file_input import file_problem, os_reason, path_problem

try:
    import yaml
except ImportError:  # pragma: no cover - the kubernetes client and the engine both bring PyYAML
    HAS_YAML = False
else:
    HAS_YAML = True

ADMIN_HINT = "the cluster's admin kubeconfig (kubeadm: /etc/kubernetes/admin.conf)"


def _names(data: Dict[str, Any], key: str) -> List[str]:
    return [str(item.get("name")) for item in data.get(key) or [] if isinstance(item, dict) and item.get("name")]


def _entry(data: Dict[str, Any], key: str, name: Any) -> Optional[Dict[str, Any]]:
    for item in data.get(key) or []:
        if isinstance(item, dict) and item.get("name") == name:
            body = item.get(key[:-1])  # clusters -> cluster, users -> user, contexts -> context
            return body if isinstance(body, dict) else {}
    return None


def structure_problem(data: Any, context: Optional[str] = None) -> Optional[str]:
    """Why a parsed kubeconfig cannot be used with ``context`` (None: its current-context), or
    None when it can. The text completes "kubeconfig FILE: ..."."""
    if data is None or data == "":
        return "it is empty"
    if not isinstance(data, dict):
        return "it is a YAML %s, not a kubeconfig (a mapping with clusters, users and contexts)" % (
            "list" if isinstance(data, list) else "scalar"
        )
    for key in ("clusters", "users", "contexts"):
        value = data.get(key)
        if value is None or value == []:
            return "it has no %s" % key
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            return "its %s is not a list of named entries" % key
    chosen = context or data.get("current-context")
    contexts = _names(data, "contexts")
    if not chosen:
        return "it has no current-context and no context was given; choose one of: %s" % ", ".join(contexts)
    ctx = _entry(data, "contexts", chosen)
    if ctx is None:
        return "it has no context %r; choose one of: %s" % (chosen, ", ".join(contexts))
    for key in ("cluster", "user"):
        name = ctx.get(key)
        if not name or _entry(data, key + "s", name) is None:
            return "context %r names %s %r, which it does not define (it has: %s)" % (
                chosen,
                key,
                name,
                ", ".join(_names(data, key + "s")) or "none",
            )
    cluster = _entry(data, "clusters", ctx.get("cluster")) or {}
    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith(("https://", "http://")):
        return "cluster %r has no server URL (https://HOST:PORT), got %r" % (ctx.get("cluster"), server)
    return None


def kubeconfig_problem(path: str, context: Optional[str] = None) -> Optional[str]:
    """Why the kubeconfig file at ``path`` cannot be used, or None. The text completes
    "kubeconfig PATH: ..." and ends with what to change."""
    problem = path_problem(path)
    if problem is not None:
        return "%s; point it at %s" % (problem, ADMIN_HINT)
    if not os.path.exists(path):
        if os.pathsep in path:  # a KUBECONFIG-style list: kubectl merges them, this takes one
            return "it lists several files (%s-separated), this takes one; point it at %s" % (os.pathsep, ADMIN_HINT)
        return "no such file; point it at %s" % ADMIN_HINT
    problem = file_problem(path)
    if problem is not None:
        return "%s; point it at %s" % (problem, ADMIN_HINT)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, ValueError) as exc:
        return "cannot be read (%s); check its permissions or point it at %s" % (os_reason(exc), ADMIN_HINT)
    if not HAS_YAML:  # pragma: no cover
        return None  # the client library then says what it finds
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = " at line %d" % (mark.line + 1) if mark is not None else ""
        return "it is not valid YAML%s; point it at %s" % (where, ADMIN_HINT)
    problem = structure_problem(data, context)
    if problem is None:
        return None
    return "%s; fix it or point it at %s" % (problem, ADMIN_HINT)
