#!/usr/bin/env bash
# Build Traefik from the Go module proxy, as lab/controlplane/build.sh builds Kubernetes.
#
# `go install github.com/traefik/traefik/v3/cmd/traefik@VERSION` is refused: Traefik's go.mod
# has replace directives. So a throw-away wrapper module requires Traefik and carries the same
# replace directives, read from Traefik's own go.mod (never typed by hand).
#
# The Gateway API CRDs (standard channel) of the release Traefik is built against (its go.mod's
# sigs.k8s.io/gateway-api) come from the same proxy, into OUTDIR/gateway-api/.
#
# Usage: build.sh OUTDIR      (OUTDIR gets bin/traefik, gateway-api/*.yaml and a BUILD-INFO stamp)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=/dev/null
. "$here/versions.env"
# shellcheck source=../lib/progress.sh
. "$here/../lib/progress.sh"
PROGRESS_NAME="traefik build"
out=$(realpath -m "${1:?usage: build.sh OUTDIR}")  # absolute: the build runs in a temporary directory
command -v go >/dev/null || { echo "build.sh: Go is required to build Traefik" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/onprem-traefik-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

module=github.com/traefik/traefik/v3
gomod=$(go mod download -json "$module@$TRAEFIK_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
[ -f "$gomod" ] || { echo "build.sh: could not download $module@$TRAEFIK_VERSION go.mod" >&2; exit 1; }
# "old => new version" lines, from a replace block or single replace lines
mapfile -t replaces < <(awk '
  /^replace \($/ {inblock = 1; next}
  inblock && /^\)$/ {inblock = 0; next}
  inblock && $2 == "=>" {print}
  /^replace / && $3 == "=>" {sub(/^replace /, ""); print}' "$gomod")
{
  echo "module onprem.invalid/traefik-build"
  echo
  echo "go $(go env GOVERSION | sed 's/^go//')"
  echo
  echo "require $module $TRAEFIK_VERSION"
  echo
  echo "replace ("
  for r in "${replaces[@]}"; do echo "	$r"; done
  echo ")"
  echo
  echo "tool $module/cmd/traefik"
} > go.mod
echo "traefik build: $module $TRAEFIK_VERSION, ${#replaces[@]} replace directives from its go.mod" >&2
progress_run "resolving the modules (go mod tidy)" go mod tidy
mkdir -p "$out.partial/bin"
export CGO_ENABLED=0
progress_run "building $module/cmd/traefik" go build -trimpath \
  -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION" \
  -o "$out.partial/bin/traefik" "$module/cmd/traefik"
gateway_api=$(awk '$1 == "sigs.k8s.io/gateway-api" {print $2; exit}' "$gomod")
[ -n "$gateway_api" ] || { echo "build.sh: $module@$TRAEFIK_VERSION's go.mod names no sigs.k8s.io/gateway-api" >&2; exit 1; }
crds=$(go mod download -json "sigs.k8s.io/gateway-api@$gateway_api" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')/config/crd/standard
ls "$crds"/*.yaml >/dev/null || { echo "build.sh: no standard-channel CRDs in sigs.k8s.io/gateway-api@$gateway_api" >&2; exit 1; }
mkdir -p "$out.partial/gateway-api"
cp "$crds"/*.yaml "$out.partial/gateway-api/"
chmod 0644 "$out.partial/gateway-api/"*.yaml
printf 'TRAEFIK_VERSION=%s\nGATEWAY_API_VERSION=%s\nGO=%s\n' "$TRAEFIK_VERSION" "$gateway_api" "$(go env GOVERSION)" > "$out.partial/BUILD-INFO"
rm -rf "$out"
mv "$out.partial" "$out"
echo "traefik build: done in $(progress_elapsed $((SECONDS - progress_started))) -> $out" >&2
