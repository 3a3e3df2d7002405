#!/usr/bin/env bash
# Regenerates the `replace` block of tests/cluster/go.mod from k8s.io/kubernetes's own go.mod.
#
# k8s.io/kubernetes requires every staging module (k8s.io/api, k8s.io/apiserver, ...) at v0.0.0
# and replaces it with ./staging/src/k8s.io/<name>, a folder its module zip does not contain.
# A consumer must replace each of them with the published module of the matching release
# (Kubernetes v1.X.Y <-> staging v0.X.Y). This script reads the `=> ./staging/` lines of the
# pinned release's go.mod and writes one `replace` per module, so the list follows the release
# instead of being copied by hand.
#
# Usage: tests/cluster/gen-replaces.sh [v1.34.4]   (default: the version go.mod requires)
# Then: go mod tidy (with the same GOMODCACHE as scripts/cluster) and commit go.mod and go.sum.
set -euo pipefail
cd "$(dirname "$0")"
: "${GOMODCACHE:=${STREAMFLEET_CLUSTER_CACHE:-$HOME/.cache/streamfleet/cluster}/gomod}"
export GOMODCACHE GOFLAGS=-mod=mod

version=${1:-$(go list -m -f '{{.Version}}' k8s.io/kubernetes)}
staging=v0.${version#v1.}
gomod=$(go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
[ -f "$gomod" ] || { echo "gen-replaces: no go.mod for k8s.io/kubernetes@$version" >&2; exit 1; }

mods=$(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/src/.*#\1#p' "$gomod" | sort -u)
[ -n "$mods" ] || { echo "gen-replaces: no staging replaces found in $gomod" >&2; exit 1; }

# Drop the previous k8s.io replaces, then add the generated ones.
for m in $(go mod edit -json | sed -n 's#^[[:space:]]*"Path": "\(k8s\.io/[^"]*\)",\{0,1\}$#\1#p' | sort -u); do
  go mod edit -dropreplace="$m" 2>/dev/null || true
done
go mod edit -require="k8s.io/kubernetes@$version"
# One block, in the order of k8s.io/kubernetes's go.mod (sorted), as `go mod edit -fmt` keeps it.
{
  printf '\nreplace (\n'
  for m in $mods; do printf '\t%s => %s %s\n' "$m" "$m" "$staging"; done
  printf ')\n'
} >> go.mod
go mod edit -fmt
n=$(printf '%s\n' $mods | wc -l)
echo "gen-replaces: $n staging modules of k8s.io/kubernetes $version replaced by $staging"
