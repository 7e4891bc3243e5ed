#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Build the KVM modules after each patch of kernel/series in turn, so that
# every prefix of the series builds (bisectability).  Slow: a module build
# per patch, incremental between patches.
#
# usage: check-series.sh PRISTINE WORKDIR HEADERS
set -euo pipefail

pristine=$1 work=$2 hdrs=$3
top=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$work"
mapfile -t patches < <(grep -v '^\s*\(#\|$\)' "$top/kernel/series")

for ((n = 1; n <= ${#patches[@]}; n++)); do
	printf '%s\n' "${patches[@]:0:n}" >"$work/series"
	echo "  BUILD   after ${patches[n - 1]}"
	SERIES=$work/series "$top/scripts/prepare-tree.sh" "$pristine" "$work/linux" "$work/kvm"
	if ! make -C "$hdrs" M="$work/kvm" -j"$(nproc)" -s modules >"$work/build.log" 2>&1; then
		grep -E 'error|Error' "$work/build.log" | head -20
		echo "check-series: the series does not build after ${patches[n - 1]}" >&2
		exit 1
	fi
done

# The whole series once more with the VMware features switched off.
echo "  BUILD   CONFIG_KVM_VMWARE=n"
if ! make -C "$hdrs" M="$work/kvm" -j"$(nproc)" -s CONFIG_KVM_VMWARE=n modules \
		>"$work/build.log" 2>&1; then
	grep -E 'error|Error' "$work/build.log" | head -20
	echo "check-series: the series does not build with CONFIG_KVM_VMWARE=n" >&2
	exit 1
fi
echo "check-series: all ${#patches[@]} prefixes of the series build, and without CONFIG_KVM_VMWARE"
