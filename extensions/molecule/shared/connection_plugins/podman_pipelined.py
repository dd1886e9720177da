"""containers.podman.podman with pipelining: one `podman exec -i` per task instead of five.

The upstream plugin turns pipelining off because it runs `podman exec` without `-i`, so a
module fed on stdin never arrives. With `-i` it does. This cuts each task on a lab node from
mkdir + copy + chmod + run + rm to a single exec; only the lab's molecule scenarios and e2e
tests use it.
"""

from __future__ import annotations

from typing import Any

from ansible_collections.containers.podman.plugins.connection.podman import Connection as PodmanConnection

DOCUMENTATION = """
    name: podman_pipelined
    short_description: containers.podman.podman with pipelining (lab nodes)
    description:
        - Runs commands in an existing podman container; modules are piped to C(podman exec -i).
    author: onprem.ingress developers
    options:
      remote_addr:
        description: The container.
        default: inventory_hostname
        vars:
          - name: ansible_host
          - name: inventory_hostname
          - name: ansible_podman_host
      remote_user:
        description: User inside the container.
        vars:
          - name: ansible_user
      podman_extra_args:
        description: Extra arguments for podman.
        default: ''
        vars:
          - name: ansible_podman_extra_args
      podman_executable:
        description: The podman command.
        default: podman
        vars:
          - name: ansible_podman_executable
"""


class Connection(PodmanConnection):  # type: ignore[misc]
    transport = "podman_pipelined"
    has_pipelining = True

    def exec_command(self, cmd: str, in_data: bytes | None = None, sudoable: bool = False) -> Any:
        if in_data is None:
            return super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        original = self._podman

        def podman_interactive(command: Any, cmd_args: Any = None, in_data: Any = None, **kwargs: Any) -> Any:
            if command in (["exec"], ["exec", "--user", self.user]):
                command = [*command, "-i"]
            return original(command, cmd_args, in_data, **kwargs)

        self._podman = podman_interactive
        try:
            return super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        finally:
            self._podman = original
