"""The controller: addresses for LoadBalancer Services from the pools (loop), one leader at a time."""

from onprem_lb.controller.loop import COMPONENT, Controller, run_controller, slim_service

__all__ = ["COMPONENT", "Controller", "run_controller", "slim_service"]
