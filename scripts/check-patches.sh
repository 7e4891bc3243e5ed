#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Run the source tarball's scripts/checkpatch.pl --strict on every patch of
# both series and on the uapi headers, and scripts/check-emulate-callers.sh
# on the patched tree.  Errors fail; warnings and checks are shown.
#
# usage: check-patches.sh LINUX   (the extracted tree that holds checkpatch)
set -uo pipefail

linux=$1
top=$(cd "$(dirname "$0")/.." && pwd)
cp=("$linux/scripts/checkpatch.pl" --strict --no-tree --terse --show-types --color=never
    --ignore=FILE_PATH_CHANGES)
# FILE_PATH_CHANGES asks for MAINTAINERS updates, which this out-of-tree
# series does not carry.

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

errors=0
check() {
	local what=$1 out n
	shift
	# From a scratch directory: --strict caches CamelCase names in
	# the working directory when that is a git tree.
	out=$(cd "$scratch" && "${cp[@]}" "$@" 2>&1)
	n=$(grep -cE ': (WARNING|CHECK):' <<<"$out")
	if grep -q ': ERROR:' <<<"$out"; then
		errors=$((errors + 1))
		echo "checkpatch: $what: errors"
	else
		echo "checkpatch: $what: no errors, $n warnings or checks"
	fi
	grep -E ': (ERROR|WARNING|CHECK):' <<<"$out" | sed 's/^/  /'
}

while read -r p; do
	check "${p#"$top"/kernel/}" "$p"
done < <("$top/scripts/series.sh" all)
for f in "$top"/uapi/linux/*.h; do
	check "uapi/linux/${f##*/}" -f "$f"
done
if ! "$top/scripts/check-emulate-callers.sh" "$linux"; then
	errors=$((errors + 1))
	echo "check-emulate-callers: errors"
else
	echo "check-emulate-callers: every caller passes -EFAULT on"
fi
exit $((errors > 0))
