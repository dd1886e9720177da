#!/usr/bin/env bash
# Build the lab node image: Debian bookworm from debootstrap, systemd as init, imported with
# `podman import`. Prints the image name on stdout.
#
# The image is named after a hash of this script (and the podman settings next to it), so a
# change here builds a new one; the rootfs tarball is cached in .cache/images/ and re-imported
# when podman's storage lost the image. The Debian mirror is the one this host's apt uses for
# the same suite (override with DEBIAN_MIRROR).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
suite=bookworm

# The URI of the first apt source (one-line or deb822 format) that serves $suite itself.
host_mirror() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    sed -E -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" | awk -v s="$suite" '$1 == "deb" && $3 == s {print $2}'
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v s="$suite" 'BEGIN {RS = ""} {
      uri = ""; ok = 0; n = split($0, lines, "\n")
      for (i = 1; i <= n; i++) {
        if (lines[i] ~ /^URIs:/) { split(lines[i], w, /[ \t]+/); uri = w[2] }
        if (lines[i] ~ /^Suites:/) { m = split(lines[i], w, /[ \t]+/); for (j = 2; j <= m; j++) if (w[j] == s) ok = 1 }
      }
      if (ok && uri != "") print uri
    }' "$f"
  done
}
# What the roles and tests need on a node: systemd + networkd (the default network stack),
# NetworkManager (the other stack host_network persists for; disabled unless a test enables
# it), python3 for Ansible, iproute2/procps for ip and sysctl, arping for the client.
packages=systemd,systemd-sysv,dbus,udev,python3,iproute2,procps,iputils-arping,iputils-ping,kmod
# Installed with apt in the finished rootfs: what `make lab` runs in a node besides the roles'
# work (kube-proxy's iptables and conntrack, the Pods' real web servers) and the client's curl.
lab_packages=(network-manager iptables conntrack nginx apache2 curl)

key=$(cat "$0" "$here/containers.conf" | sha256sum | cut -c1-12)
image=localhost/onprem-lab-node:$key
cache=$repo/.cache/images
tarball=$cache/onprem-lab-node-$key.tar

log() { echo "build-image: $*" >&2; }
# shellcheck source=../lib/progress.sh
. "$here/../lib/progress.sh"
PROGRESS_NAME=build-image

if podman image exists "$image"; then
  echo "$image"
  exit 0
fi
if [ ! -s "$tarball" ]; then
  mirror=${DEBIAN_MIRROR:-$(host_mirror | head -n 1)}
  [ -n "$mirror" ] || { log "no apt source for $suite on this host: set DEBIAN_MIRROR"; exit 1; }
  [ "$(id -u)" -eq 0 ] || { log "debootstrap needs root"; exit 1; }
  command -v debootstrap >/dev/null || { log "debootstrap missing (scripts/host-deps.sh installs it)"; exit 1; }
  mkdir -p "$cache"
  work=$(mktemp -d "$cache/rootfs.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  rootfs=$work/rootfs
  start=$(date +%s)
  if ! progress_run "debootstrap $suite from $mirror (a few minutes; log in $cache/debootstrap.log)" \
      debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" \
      >"$cache/debootstrap.log" 2>&1; then
    tail -n 20 "$cache/debootstrap.log" >&2
    log "debootstrap failed"
    exit 1
  fi
  # NetworkManager's dependencies (polkitd) do not configure inside debootstrap's second
  # stage; apt in the finished rootfs installs it (and the lab's packages) normally.
  printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
  chmod +x "$rootfs/usr/sbin/policy-rc.d"
  if ! progress_run "apt-get install ${lab_packages[*]} in the rootfs" \
      chroot "$rootfs" sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"' \
      apt "${lab_packages[@]}" >>"$cache/debootstrap.log" 2>&1; then
    tail -n 20 "$cache/debootstrap.log" >&2
    log "installing ${lab_packages[*]} into the rootfs failed"
    exit 1
  fi
  rm -f "$rootfs/usr/sbin/policy-rc.d"
  # A node boots straight into systemd: no getty, no time sync, no apt timers, no udev
  # trigger storms; eth0 (addressed by podman) is managed by networkd and kept as podman set it.
  chroot "$rootfs" systemctl mask getty@tty1.service console-getty.service systemd-timesyncd.service \
    apt-daily.timer apt-daily-upgrade.timer e2scrub_reap.service systemd-udev-trigger.service >/dev/null 2>&1 || true
  chroot "$rootfs" systemctl enable systemd-networkd.service >&2
  chroot "$rootfs" systemctl disable NetworkManager.service NetworkManager-wait-online.service >/dev/null 2>&1 || true
  # nginx and apache2 run per Pod, started by the lab's pod runner, never as the distribution's
  # services on the node's own address.
  chroot "$rootfs" systemctl disable nginx.service apache2.service >/dev/null 2>&1 || true
  # podman mounts /proc/sys read-only. The node's network settings live in its own network
  # namespace, so /proc/sys/net alone is made writable (before systemd-sysctl applies
  # /etc/sysctl.d at boot); everything else in /proc/sys stays read-only.
  cat >"$rootfs/etc/systemd/system/lab-proc-sys-net.service" <<'UNIT'
[Unit]
Description=Writable /proc/sys/net for this node's network namespace
DefaultDependencies=no
Before=systemd-sysctl.service systemd-networkd.service NetworkManager.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/mount --bind /proc/sys/net /proc/sys/net
ExecStart=/bin/mount -o remount,bind,rw /proc/sys/net

[Install]
WantedBy=sysinit.target
UNIT
  chroot "$rootfs" systemctl enable lab-proc-sys-net.service >&2
  mkdir -p "$rootfs/etc/systemd/network"
  cat >"$rootfs/etc/systemd/network/10-lab-eth0.network" <<'NET'
# Lab node uplink: podman gives eth0 its address; networkd manages the link and keeps it.
[Match]
Name=eth0

[Network]
DHCP=no
LinkLocalAddressing=no
IPv6AcceptRA=no
KeepConfiguration=yes
NET
  # NetworkManager, when a test enables it, must not invent DHCP profiles for lab links.
  mkdir -p "$rootfs/etc/NetworkManager/conf.d"
  printf '[main]\nno-auto-default=*\n' >"$rootfs/etc/NetworkManager/conf.d/10-lab.conf"
  echo "onprem-lab-node" >"$rootfs/etc/hostname"
  : >"$rootfs/etc/machine-id"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" --numeric-owner -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  log "rootfs built in $(($(date +%s) - start))s: $tarball ($(du -h "$tarball" | cut -f1))"
fi
podman import --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL=SIGRTMIN+3' "$tarball" "$image" >/dev/null
log "imported $image"
echo "$image"
