# -*- coding: utf-8 -*-
# Copyright: onprem.ingress developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  kubeconfig:
    description:
      - Path to a kubeconfig file for the cluster.
      - Falls back to the E(K8S_AUTH_KUBECONFIG) environment variable (as in kubernetes.core),
        then to the default kubeconfig location, then to in-cluster credentials.
    type: path
  context:
    description:
      - Context of O(kubeconfig) to use. Falls back to E(K8S_AUTH_CONTEXT).
    type: str
  pool_namespace:
    description:
      - Namespace holding the IPAddressPool objects.
    type: str
    default: metallb-system
  lb_class:
    description:
      - The C(spec.loadBalancerClass) of the onprem-lb controller whose view to take (its
        C(lb_controller_lb_class)); unset for the default load balancer, which serves the
        Services that set no class.
      - Only Services of this class count as holding addresses, as for that controller.
    type: str
requirements:
  - kubernetes >= 30.0.0 (Python library)
  - netaddr (Python library)
"""
