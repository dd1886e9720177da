# -*- coding: utf-8 -*-
# Copyright: onprem.ingress developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kubernetes name rules, checked before anything reaches the API server (which would refuse
the name later, after other objects were applied). One place for the modules, the filters and
the engine (src/onprem_lb/k8s_names.py is this file). Python 3.9 syntax, standard library only.
"""

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

import re
from typing import Any, Optional

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN_PART = DNS_LABEL
LABEL_RULE = "lower case a-z, 0-9 and '-', starting and ending with a letter or digit, at most 63"
SUBDOMAIN_RULE = "lower case a-z, 0-9, '-' and '.', starting and ending with a letter or digit, at most 253"


def label_problem(value: Any) -> Optional[str]:
    """Why ``value`` is not a DNS-1123 label (namespaces, Service names), or None."""
    text = value if isinstance(value, str) else None
    if not text or len(text) > 63 or not DNS_LABEL.fullmatch(text):
        return "%r is not a DNS-1123 label (%s)" % (value, LABEL_RULE)
    return None


def subdomain_problem(value: Any) -> Optional[str]:
    """Why ``value`` is not a DNS-1123 subdomain (most object names), or None."""
    text = value if isinstance(value, str) else None
    if not text or len(text) > 253 or not all(DNS_SUBDOMAIN_PART.fullmatch(part) for part in text.split(".")):
        return "%r is not a DNS-1123 subdomain (%s)" % (value, SUBDOMAIN_RULE)
    return None
