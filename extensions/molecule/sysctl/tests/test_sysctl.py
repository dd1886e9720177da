"""onprem.ingress.sysctl on lab nodes: what the kernel reports, what is persisted, and undo.

The tests run in order: the converged state first, then check mode, a revert of one
setting, bad input, and finally state=absent (the scenario is destroyed afterwards).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

CONF = "/etc/sysctl.d/90-onprem-ingress.conf"
# What converge.yml + molecule.yml's group_vars ask for.
CONVERGED = {
    "net.ipv4.conf.all.arp_ignore": 1,
    "net.ipv4.conf.all.arp_announce": 2,
    "net.ipv4.conf.default.arp_ignore": 1,
    "net.ipv4.conf.eth0.arp_ignore": 1,
    "net.ipv4.conf.eth0.arp_announce": 2,
    "net.ipv4.conf.all.rp_filter": 2,
    "net.ipv4.conf.eth0.rp_filter": 2,
    "net.ipv4.ip_forward": 1,
    "net.ipv6.conf.all.forwarding": 1,
    "net.ipv4.ip_nonlocal_bind": 1,
    "net.ipv6.ip_nonlocal_bind": 1,
    "net.ipv4.conf.eth0.accept_local": 1,
}


def test_kernel_reports_the_settings(node: Any) -> None:
    for name, value in CONVERGED.items():
        assert node.sysctl(name) == value, name
    # arp_filter is not managed by default: left at the kernel's value.
    assert node.sysctl("net.ipv4.conf.all.arp_filter") == 0


def test_settings_are_persisted(node: Any) -> None:
    conf = node.file(CONF)
    assert conf.is_file
    assert conf.mode == 0o644
    lines = {line.split(" = ")[0]: line.split(" = ")[1] for line in conf.content_string.splitlines() if " = " in line}
    for name, value in CONVERGED.items():
        assert lines.get(name) == str(value), name
    # systemd-sysctl (what runs at boot) accepts the file as written.
    assert node.run(f"/lib/systemd/systemd-sysctl {CONF}").rc == 0


def test_check_mode_reports_without_changing(playbook: Callable[..., Any], nodes: list[Any]) -> None:
    run = playbook(extra_vars={"sysctl_arp_filter": 1}, check=True, diff=True)
    assert run.rc == 0, run.report
    task = run.task_results("Write the sysctl.d file and apply it now")
    assert task and all(r["changed"] for r in task)
    diff_text = str(task[0]["diff"])
    assert "net.ipv4.conf.all.arp_filter = 1" in diff_text
    for node in nodes:
        assert node.sysctl("net.ipv4.conf.all.arp_filter") == 0
        assert "arp_filter" not in node.file(CONF).content_string


def test_a_setting_dropped_is_reverted(playbook: Callable[..., Any], nodes: list[Any]) -> None:
    run = playbook(extra_vars={"sysctl_ip_nonlocal_bind": False})
    assert run.rc == 0, run.report
    for node in nodes:
        assert node.sysctl("net.ipv4.ip_nonlocal_bind") == 0
        assert node.sysctl("net.ipv6.ip_nonlocal_bind") == 0
        assert "nonlocal_bind" not in node.file(CONF).content_string
        assert node.sysctl("net.ipv4.conf.all.arp_ignore") == 1
    again = playbook(extra_vars={"sysctl_ip_nonlocal_bind": False})
    assert again.rc == 0 and all(again.changed(n) == 0 for n in again.stats), again.report


def test_reverting_goes_back_to_the_hosts_own_config(playbook: Callable[..., Any], nodes: list[Any]) -> None:
    """A setting we stop making returns to what the host's own sysctl.d says, read as systemd does."""
    site = "net.ipv4.conf.*.rp_filter = 1\n-net.ipv4.conf.all.rp_filter\n"
    for node in nodes:
        assert node.run(f"printf '{site}' > /etc/sysctl.d/50-site.conf").rc == 0
    run = playbook(extra_vars={"sysctl_rp_filter": None})
    assert run.rc == 0, run.report
    for node in nodes:
        assert node.sysctl("net.ipv4.conf.eth0.rp_filter") == 1  # the host's glob
        assert node.sysctl("net.ipv4.conf.default.rp_filter") == 1
        assert node.sysctl("net.ipv4.conf.all.rp_filter") == 0  # excluded from the glob: kernel default
        assert "rp_filter" not in node.file(CONF).content_string
        node.run("rm -f /etc/sysctl.d/50-site.conf")


def test_missing_interface_is_a_clear_error_and_nothing_changes(playbook: Callable[..., Any], nodes: list[Any]) -> None:
    before = [node.file(CONF).content_string for node in nodes]
    run = playbook(extra_vars={"sysctl_interfaces": ["eth0", "bond7"], "sysctl_arp_filter": 1})
    assert run.rc != 0
    messages = " ".join(run.failed_messages())
    assert "net.ipv4.conf.bond7.arp_ignore does not exist" in messages, run.report
    assert "Traceback" not in run.output
    for node, content in zip(nodes, before, strict=True):
        assert node.file(CONF).content_string == content
        assert node.sysctl("net.ipv4.conf.all.arp_filter") == 0


def test_bad_values_are_refused_before_anything_changes(playbook: Callable[..., Any]) -> None:
    run = playbook(extra_vars={"sysctl_ip_forward": "maybe"})  # the argument spec's type check
    assert run.rc != 0 and "sysctl_ip_forward" in run.output, run.report
    run = playbook(extra_vars={"sysctl_arp_ignore": 5})  # the role's own check of the value
    assert run.rc != 0
    assert "sysctl_arp_ignore is 5; the kernel takes one of 0, 1, 2, 3, 8" in " ".join(run.failed_messages())
    assert all(run.changed(n) == 0 for n in run.stats)
    run = playbook(extra_vars={"sysctl_extra_settings": [{"name": "net.ipv4.conf.all.accept_local"}]})
    assert run.rc != 0
    assert any("net.ipv4.conf.all.accept_local has no value" in m for m in run.failed_messages()), run.report


def test_state_absent_removes_the_file_and_reverts(playbook: Callable[..., Any], nodes: list[Any]) -> None:
    run = playbook(extra_vars={"sysctl_state": "absent"})
    assert run.rc == 0, run.report
    for node in nodes:
        assert not node.file(CONF).exists
        assert node.sysctl("net.ipv4.conf.all.arp_ignore") == 0
        assert node.sysctl("net.ipv4.conf.all.arp_announce") == 0
        # No revert value is known for accept_local: it keeps its value, and the run says so.
        assert node.sysctl("net.ipv4.conf.eth0.accept_local") == 1
    warnings = [w for r in run.results for w in r.get("warnings", [])]
    assert any("net.ipv4.conf.eth0.accept_local" in w and "no revert value" in w for w in warnings), warnings
    again = playbook(extra_vars={"sysctl_state": "absent"})
    assert again.rc == 0 and all(again.changed(n) == 0 for n in again.stats), again.report
