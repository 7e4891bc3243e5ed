#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The upstream KVM selftests we run, and what we expect of them under
# QEMU's software emulation (selftests/upstream.expect).
#
#   upstream-tests.sh list DIR      "name timeout [args]" per test to run
#   upstream-tests.sh expect NAME   the reason, if NAME is expected to fail
#   upstream-tests.sh notrun        "name reason" per test not run
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
expect=$top/selftests/upstream.expect
default_timeout=120

# name outcome timeout reason...
entries() { grep -v '^[[:space:]]*\(#\|$\)' "$expect" || true; }

case "$1" in
list)
	dir=$2
	(cd "$dir" && find . -maxdepth 2 -type f -perm -u+x ! -path './lib/*' -printf '%P\n') |
	sort | while read -r name; do
		line=$(entries | awk -v n="$name" '$1 == n')
		outcome=$(echo "$line" | awk '{print $2}')
		timeout=$(echo "$line" | awk '{print $3}')
		[ "$outcome" = notrun ] && continue
		[ -z "$timeout" ] || [ "$timeout" = - ] && timeout=$default_timeout
		echo "$name $timeout"
	done
	;;
expect)
	entries | awk -v n="$2" '$1 == n && $2 == "fail" { $1 = $2 = $3 = ""; sub(/^ +/, ""); print }'
	;;
notrun)
	entries | awk '$2 == "notrun" { name = $1; $1 = $2 = $3 = ""; sub(/^ +/, ""); print name, $0 }'
	;;
*)
	echo "usage: $0 list DIR | expect NAME | notrun" >&2
	exit 2
	;;
esac
