#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The upstream KVM selftests we run, and what we expect of them under
# QEMU's software emulation (selftests/upstream.expect, or $UPSTREAM_EXPECT).
#
#   upstream-tests.sh list DIR             "name timeout [args]" per test to run
#   upstream-tests.sh fail CONFIG NAME     the reason, if NAME is expected to
#                                          fail in CONFIG
#   upstream-tests.sh flaky CONFIG NAME    the reason, if NAME is flaky in CONFIG
#   upstream-tests.sh notrun CONFIG        "name reason" per test not run in
#                                          CONFIG
#   upstream-tests.sh notrun-some          "configs name" per test not run in
#                                          some configurations only
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
expect=${UPSTREAM_EXPECT:-$top/selftests/upstream.expect}
default_timeout=120

# name configs outcome timeout reason...
entries() { grep -v '^[[:space:]]*\(#\|$\)' "$expect" || true; }

# The reason given for NAME's OUTCOME in CONFIG, if there is one.
reason() {
	entries | awk -v c="$1" -v n="$2" -v o="$3" '
		$1 == n && $3 == o && ($2 == "all" || index("," $2 ",", "," c ",")) {
			$1 = $2 = $3 = $4 = ""; sub(/^ +/, ""); print; exit
		}'
}

case "$1" in
list)
	dir=$2
	(cd "$dir" && find . -maxdepth 2 -type f -perm -u+x ! -path './lib/*' -printf '%P\n') |
	sort | while read -r name; do
		lines=$(entries | awk -v n="$name" '$1 == n')
		awk '$3 == "notrun" && $2 == "all"' <<<"$lines" | grep -q . && continue
		# The longest timeout any configuration needs.
		timeout=$(awk -v t=$default_timeout '$4 ~ /^[0-9]+$/ && $4 > t { t = $4 } END { print t }' <<<"$lines")
		echo "$name $timeout"
	done
	;;
fail|flaky)
	reason "$2" "$3" "$1"
	;;
notrun)
	entries | awk -v c="$2" '$3 == "notrun" && ($2 == "all" || index("," $2 ",", "," c ",")) {
		name = $1; $1 = $2 = $3 = $4 = ""; sub(/^ +/, ""); print name, $0
	}'
	;;
notrun-some)
	entries | awk '$3 == "notrun" && $2 != "all" { print $2, $1 }'
	;;
*)
	echo "usage: $0 list DIR | fail CONFIG NAME | flaky CONFIG NAME | notrun CONFIG | notrun-some" >&2
	exit 2
	;;
esac
