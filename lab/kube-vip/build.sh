#!/usr/bin/env bash
# Build kube-vip from the Go module proxy, for the control-plane address bench only
# (bench/control_plane_bench.py --engine kube-vip).
#
# `go install github.com/kube-vip/kube-vip@VERSION` is refused: it asks the proxy for the module's
# version list (for deprecation notices), which the proxy this project may use does not serve. So
# the module's own source is downloaded (`go mod download`, one version, no list), copied into a
# throw-away directory and built there as the main module, with its own go.mod and go.sum.
#
# Usage: build.sh OUTDIR      (OUTDIR gets bin/kube-vip and a BUILD-INFO stamp)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=/dev/null
. "$here/versions.env"
# shellcheck source=../lib/progress.sh
. "$here/../lib/progress.sh"
PROGRESS_NAME="kube-vip build"
out=$(realpath -m "${1:?usage: build.sh OUTDIR}")  # absolute: the build runs in a temporary directory
command -v go >/dev/null || { echo "build.sh: Go is required to build kube-vip" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/onprem-kube-vip-build.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

module=github.com/kube-vip/kube-vip
download=$(cd "$work" && go mod download -json "$module@$KUBE_VIP_VERSION")
src=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p' <<<"$download")
commit=$(sed -n 's/^[[:space:]]*"Hash": "\(.*\)",*$/\1/p' <<<"$download")
[ -f "$src/go.mod" ] || { echo "build.sh: could not download $module@$KUBE_VIP_VERSION" >&2; exit 1; }
# the module cache is read-only: a copy to build in, writable (go may tidy its go.sum)
cp -R "$src" "$work/src"
chmod -R u+w "$work/src"
cd "$work/src"
echo "kube-vip build: $module $KUBE_VIP_VERSION (commit ${commit:-unknown})" >&2
progress_run "downloading its modules" go mod download
mkdir -p "$out.partial/bin"
export CGO_ENABLED=0
progress_run "building $module" go build -trimpath \
  -ldflags "-s -w -X main.Version=$KUBE_VIP_VERSION -X main.Build=${commit:-unknown}" \
  -o "$out.partial/bin/kube-vip" .
"$out.partial/bin/kube-vip" version >/dev/null 2>&1 || { echo "build.sh: the built kube-vip does not run" >&2; exit 1; }
printf 'KUBE_VIP_VERSION=%s\nCOMMIT=%s\nGO=%s\n' "$KUBE_VIP_VERSION" "${commit:-unknown}" "$(go env GOVERSION)" > "$out.partial/BUILD-INFO"
rm -rf "$out"
mv "$out.partial" "$out"
echo "kube-vip build: done in $(progress_elapsed $((SECONDS - progress_started))) -> $out" >&2
