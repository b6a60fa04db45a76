#!/usr/bin/env bash
# breaking.sh runs `buf breaking` (the WIRE_JSON rules of buf.yaml) against a
# git revision, default HEAD~1. buf cannot compare against '.git#…' here
# because protovalidate's proto is a git-ignored symlink, so the base tree is
# extracted to a temporary directory and given the same symlink.
set -euo pipefail
base="${1:-HEAD~1}"
root=$(git rev-parse --show-toplevel)
cd "$root"
if ! git rev-parse --verify --quiet "${base}^{commit}" >/dev/null; then
	echo "breaking: no revision ${base} (no earlier commit): skipped"
	exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git archive "$base" | tar -x -C "$tmp"
if [[ ! -f "$tmp/buf.yaml" ]]; then
	echo "breaking: ${base} has no buf.yaml: skipped"
	exit 0
fi
./scripts/protodeps.sh "$tmp"
echo "breaking: comparing the working tree with ${base} ($(git rev-parse --short "$base"))"
go tool -modfile=tools/buf.mod buf breaking --against "$tmp"
