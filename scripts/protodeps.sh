#!/usr/bin/env bash
# protodeps.sh links third-party proto modules from the Go module cache into
# .protodeps/ (git-ignored), so buf can resolve them without the Buf Schema
# Registry. Run from the repository root (or pass it as $1).
set -euo pipefail
root="${1:-$(pwd)}"
cd "$root"
version=v1.2.2 # buf/validate/validate.proto matching buf.build/go/protovalidate v1.4.0
dir=$(go mod download -json "github.com/bufbuild/protovalidate@${version}" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if [[ -z "$dir" || ! -f "$dir/proto/protovalidate/buf/validate/validate.proto" ]]; then
	echo "protodeps: github.com/bufbuild/protovalidate@${version} has no proto/protovalidate in the module cache" >&2
	exit 1
fi
mkdir -p .protodeps
ln -sfn "$dir/proto/protovalidate" .protodeps/protovalidate
