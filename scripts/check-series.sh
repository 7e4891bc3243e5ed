#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Build the KVM modules after each patch of our two series in turn, so that
# every prefix builds (bisectability):
#
#   - the write-tracking series (kernel/series) on Linux 6.12;
#   - the VMware series (kernel/vmware/series) on Linux 6.12 alone;
#   - the VMware series after the whole write-tracking series;
#
# then both series without CONFIG_KVM_VMWARE and without
# CONFIG_KVM_WRITE_TRACK (kernel/Kbuild's switches).  Slow: a module build
# per patch, incremental between patches.
#
# usage: check-series.sh PRISTINE WORKDIR HEADERS
set -euo pipefail

pristine=$1 work=$2 hdrs=$3
top=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$work"
mapfile -t wtrack < <("$top/scripts/series.sh" wtrack)
mapfile -t vmware < <("$top/scripts/series.sh" vmware)
builds=0

# Build the modules with the patches listed in $work/patches; $1 names the
# build, $2 holds extra make arguments.
build() {
	local what=$1 args=$2
	echo "  BUILD   $what"
	PATCHES=$work/patches "$top/scripts/prepare-tree.sh" "$pristine" "$work/linux" "$work/kvm"
	if ! make -C "$hdrs" M="$work/kvm" -j"$(nproc)" -s $args modules >"$work/build.log" 2>&1; then
		grep -E 'error|Error' "$work/build.log" | head -20
		echo "check-series: the build fails: $what" >&2
		exit 1
	fi
	builds=$((builds + 1))
}

# Each prefix of the patches in "$@", after the ones in $base.
prefixes() {
	local base=$1 label=$2 n
	shift 2
	local list=("$@")
	for ((n = 1; n <= ${#list[@]}; n++)); do
		{ [ -n "$base" ] && cat "$base"; printf '%s\n' "${list[@]:0:n}"; } >"$work/patches"
		build "$label $(basename "${list[n - 1]}")" ""
	done
}

prefixes "" "write tracking:" "${wtrack[@]}"
prefixes "" "VMware alone:" "${vmware[@]}"
printf '%s\n' "${wtrack[@]}" >"$work/wtrack"
prefixes "$work/wtrack" "VMware after write tracking:" "${vmware[@]}"

printf '%s\n' "${wtrack[@]}" "${vmware[@]}" >"$work/patches"
build "both, CONFIG_KVM_VMWARE=n" "CONFIG_KVM_VMWARE=n"
build "both, CONFIG_KVM_WRITE_TRACK=n" "CONFIG_KVM_WRITE_TRACK=n"
echo "check-series: $builds builds: every prefix of both series, the VMware" \
     "series alone, and both without each of their options"
