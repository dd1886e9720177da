"""onprem-lb: the load-balancer engine of onprem.ingress (controller and speakers)."""

__version__ = "0.1.0"
