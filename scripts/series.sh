#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The patches of our kernel series, one path a line, in the order they
# apply: the write-tracking series (kernel/series, kernel/patches/), then
# the VMware series (kernel/vmware/series, kernel/vmware/patches/), which
# applies to Linux 6.12 on its own as well.
#
# usage: series.sh [wtrack|vmware|all]   (default: all)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)

list() {
	local dir=$1
	{ grep -v '^\s*\(#\|$\)' "$dir/series" || true; } | sed "s|^|$dir/patches/|"
}

case "${1:-all}" in
wtrack) list "$top/kernel" ;;
vmware) list "$top/kernel/vmware" ;;
all) list "$top/kernel"; list "$top/kernel/vmware" ;;
*) echo "usage: series.sh [wtrack|vmware|all]" >&2; exit 2 ;;
esac
