#!/usr/bin/env bash
# Build the lab's Kubernetes from the Go module proxy: kube-apiserver, kube-controller-manager,
# kube-scheduler, kube-proxy, kubectl, etcd, and kwok (the kubelet stand-in, see docs/guides/lab.md).
#
# `go install k8s.io/kubernetes/cmd/...@vX` cannot work: k8s.io/kubernetes requires its staging
# modules at v0.0.0 and replaces them with ./staging/src/..., and Go refuses `install pkg@version`
# for modules with replace directives. So we write a throw-away wrapper module that requires
# k8s.io/kubernetes and etcd, and replaces every staging module with its published v0.X.Y tag.
# The staging list is read from k8s.io/kubernetes's own go.mod, never typed by hand.
#
# kwok is its own module with its own client-go: built apart with `go install`, which works for a
# module without replace directives.
#
# Usage: build.sh OUTDIR      (OUTDIR gets the binaries and a BUILD-INFO stamp)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=/dev/null
. "$here/versions.env"
# shellcheck source=../lib/progress.sh
. "$here/../lib/progress.sh"
PROGRESS_NAME="controlplane build"
out=${1:?usage: build.sh OUTDIR}
command -v go >/dev/null || { echo "build.sh: Go is required to build the control plane (https://go.dev/dl/)" >&2; exit 1; }

staging_version="v0.${K8S_VERSION#v1.}"
work=$(mktemp -d "${TMPDIR:-/tmp}/onprem-cp-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

echo "controlplane build: kubernetes $K8S_VERSION (staging $staging_version), etcd $ETCD_VERSION, kwok $KWOK_VERSION"
k8s_gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
[ -f "$k8s_gomod" ] || { echo "build.sh: could not download k8s.io/kubernetes@$K8S_VERSION go.mod" >&2; exit 1; }
mapfile -t staging < <(awk '$2 == "=>" && $3 ~ /^\.\/staging\/src\// {print $1}' "$k8s_gomod" | sort -u)
[ "${#staging[@]}" -ge 25 ] || { echo "build.sh: found only ${#staging[@]} staging modules in $k8s_gomod" >&2; exit 1; }
echo "controlplane build: ${#staging[@]} staging modules"

{
  echo "module onprem.invalid/controlplane-build"
  echo
  echo "go $(go env GOVERSION | sed 's/^go//')"
  echo
  echo "require ("
  echo "	k8s.io/kubernetes $K8S_VERSION"
  echo "	go.etcd.io/etcd/server/v3 $ETCD_VERSION"
  echo ")"
  echo
  echo "replace ("
  for m in "${staging[@]}"; do echo "	$m => $m $staging_version"; done
  echo ")"
  echo
  echo "tool ("
  echo "	k8s.io/kubernetes/cmd/kube-apiserver"
  echo "	k8s.io/kubernetes/cmd/kube-controller-manager"
  echo "	k8s.io/kubernetes/cmd/kube-scheduler"
  echo "	k8s.io/kubernetes/cmd/kube-proxy"
  echo "	k8s.io/kubernetes/cmd/kubectl"
  echo "	go.etcd.io/etcd/server/v3"
  echo ")"
} > go.mod
progress_run "resolving the modules (go mod tidy)" go mod tidy

major=${K8S_VERSION#v}; major=${major%%.*}
minor=${K8S_VERSION#v*.}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

mkdir -p "$out.partial"
export CGO_ENABLED=0
for pkg in k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
           k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl; do
  progress_run "building $pkg" \
    go build -trimpath -ldflags "$ldflags" -o "$out.partial/$(basename "$pkg")" "$pkg"
done
progress_run "building go.etcd.io/etcd/server/v3" go build -trimpath -ldflags "-s -w" -o "$out.partial/etcd" go.etcd.io/etcd/server/v3
progress_run "building sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" \
  env GOBIN="$out.partial" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
# kwok alone runs no lifecycle until given Stages; kwokctl hands it its defaults. The lab uses
# the same ones, taken from the module itself: node initialize + heartbeat with lease, pod
# ready / complete / delete.
kwok_dir=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
for stage in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
             pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
  echo "---"
  cat "$kwok_dir/kustomize/stage/$stage.yaml"
done > "$out.partial/kwok-stages.yaml"
printf 'K8S_VERSION=%s\nETCD_VERSION=%s\nKWOK_VERSION=%s\nGO=%s\n' "$K8S_VERSION" "$ETCD_VERSION" "$KWOK_VERSION" \
  "$(go env GOVERSION)" > "$out.partial/BUILD-INFO"
rm -rf "$out"
mv "$out.partial" "$out"
echo "controlplane build: done in $(progress_elapsed $((SECONDS - progress_started))) -> $out"
