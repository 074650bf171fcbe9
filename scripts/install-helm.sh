#!/usr/bin/env bash
# Build the helm CLI from its Go module into the guardian cache (no binary
# download: only the Go module proxy is reachable here). Idempotent: prints
# the path of the cached binary and exits at once when it is already there.
#
#   scripts/install-helm.sh            # -> ~/.cache/guardian/bin/helm-v3.22.0/helm
#   HELM_VERSION=v3.21.4 scripts/install-helm.sh
#
# Needs Go >= the version helm's go.mod asks for (1.26 for v3.22); GO may
# point at the go binary, default: `go` on PATH, else /usr/local/go/bin/go.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
CACHE="${GUARDIAN_DEV__HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/guardian}"
DEST="$CACHE/bin/helm-$HELM_VERSION"

if [[ -x "$DEST/helm" ]]; then
  echo "$DEST/helm"
  exit 0
fi

GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
if [[ ! -x "$GO" ]]; then
  echo "install-helm: no Go toolchain (set GO=/path/to/go)" >&2
  exit 3
fi

mkdir -p "$DEST"
# Build into a temp dir, then move: a killed build never leaves a half binary.
tmp="$(mktemp -d "$CACHE/bin/.helm-build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
# The same ldflags as helm's own Makefile: the version, and the Kubernetes
# version that `helm template` / `helm lint` assume when no cluster is asked
# (without them helm falls back to v1.20 and refuses charts needing newer).
moddir="$("$GO" mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
client_go="$(sed -n 's/^[[:space:]]*k8s.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$moddir/go.mod" | head -n1)"
if [[ -z "$client_go" ]]; then
  echo "install-helm: cannot read k8s.io/client-go's version from $moddir/go.mod" >&2
  exit 4
fi
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in pkg/lint/rules pkg/chartutil; do
  ldflags+=" -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$client_go"
done
CGO_ENABLED=0 GOBIN="$tmp" GOFLAGS="${GOFLAGS:-} -trimpath" "$GO" install -ldflags "$ldflags" \
  "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
mv "$tmp/helm" "$DEST/helm"
echo "$DEST/helm"
