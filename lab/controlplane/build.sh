#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager, kubectl and etcd from the Go module proxy.
#
# `go install k8s.io/kubernetes/cmd/...@vX` cannot work: k8s.io/kubernetes requires its staging
# modules at v0.0.0 and replaces them with ./staging/src/..., and Go refuses `install pkg@version`
# for modules with replace directives. So we write a throw-away wrapper module that requires
# k8s.io/kubernetes and etcd, and replaces every staging module with its published v0.X.Y tag.
# The staging list is read from k8s.io/kubernetes's own go.mod, never typed by hand.
#
# Usage: build.sh OUTDIR      (OUTDIR gets the four binaries and a BUILD-INFO stamp)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=/dev/null
. "$here/versions.env"
out=${1:?usage: build.sh OUTDIR}
command -v go >/dev/null || { echo "build.sh: Go is required to build the control plane (https://go.dev/dl/)" >&2; exit 1; }

staging_version="v0.${K8S_VERSION#v1.}"
work=$(mktemp -d "${TMPDIR:-/tmp}/onprem-cp-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

echo "controlplane build: kubernetes $K8S_VERSION (staging $staging_version), etcd $ETCD_VERSION"
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
  echo "	k8s.io/kubernetes/cmd/kubectl"
  echo "	go.etcd.io/etcd/server/v3"
  echo ")"
} > go.mod
go mod tidy

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
           k8s.io/kubernetes/cmd/kubectl; do
  echo "controlplane build: $pkg"
  go build -trimpath -ldflags "$ldflags" -o "$out.partial/$(basename "$pkg")" "$pkg"
done
echo "controlplane build: go.etcd.io/etcd/server/v3"
go build -trimpath -ldflags "-s -w" -o "$out.partial/etcd" go.etcd.io/etcd/server/v3
printf 'K8S_VERSION=%s\nETCD_VERSION=%s\nGO=%s\n' "$K8S_VERSION" "$ETCD_VERSION" "$(go env GOVERSION)" > "$out.partial/BUILD-INFO"
rm -rf "$out"
mv "$out.partial" "$out"
echo "controlplane build: done -> $out"
