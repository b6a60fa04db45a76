#!/usr/bin/env bash
# Fails when a tracked file is larger than the limit (2 MB; LIMIT_BYTES to
# change it): build outputs, dumps and data sets do not belong in git.
# Generated code under gen/ is exempt by name: it is committed on purpose
# (make checkgenerate keeps it current). Run by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
limit=${LIMIT_BYTES:-$((2 * 1024 * 1024))}
status=0
while IFS= read -r -d '' file; do
	case "$file" in gen/*) continue ;; esac
	[ -f "$file" ] || continue # deleted in the work tree, or a submodule
	size=$(stat -c %s -- "$file")
	if [ "$size" -gt "$limit" ]; then
		echo "check-large-files: $file is $size bytes, over the $limit-byte limit" >&2
		status=1
	fi
done < <(git ls-files -z)
if [ "$status" -ne 0 ]; then
	echo "check-large-files: remove it from git (git rm --cached) and ignore it, or keep it elsewhere" >&2
fi
exit "$status"
