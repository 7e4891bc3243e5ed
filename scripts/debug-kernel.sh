#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Build the debug kernel of 'make check-debug': the whole Linux 6.12 of
# Debian's linux-source package with our series applied, configured from
# tinyconfig plus kernel/debug.config (KASAN, lockdep, KMEMLEAK,
# KVM_PROVE_MMU...), KVM as modules.  Incremental: the pristine tree is
# extracted once, the series is overlaid as for the module build, and
# only a changed configuration fragment reconfigures.
#
# usage: debug-kernel.sh PRISTINE LINUX
#   leaves LINUX/arch/x86/boot/bzImage and the KVM modules in LINUX
set -euo pipefail

pristine=$1 linux=$2
top=$(cd "$(dirname "$0")/.." && pwd)
tarball=/usr/src/linux-source-6.12.tar.xz
fragment=$top/kernel/debug.config

if [ ! -e "$pristine/.stamp" ]; then
	echo "  EXTRACT linux-source-6.12 (all of it)"
	rm -rf "$pristine" && mkdir -p "$pristine"
	tar -xf "$tarball" -C "$pristine" --strip-components=1
	touch "$pristine/.stamp"
fi

echo "  PATCH   kernel/series kernel/vmware/series (debug tree)"
"$top/scripts/prepare-tree.sh" "$pristine" "$linux" "$linux.kvm-unused"
rm -rf "$linux.kvm-unused"

if ! cmp -s "$fragment" "$linux/.debug.config"; then
	echo "  CONFIG  tinyconfig + kernel/debug.config"
	make -C "$linux" -s tinyconfig
	"$linux/scripts/kconfig/merge_config.sh" -m -O "$linux" "$linux/.config" \
		"$fragment" >/dev/null
	make -C "$linux" -s olddefconfig
	missing=$(grep '^CONFIG_' "$fragment" | while read -r want; do
		grep -qx "$want" "$linux/.config" || echo "$want"
	done)
	if [ -n "$missing" ]; then
		echo "debug-kernel: not in the resulting configuration:" $missing >&2
		exit 1
	fi
	cp "$fragment" "$linux/.debug.config"
fi

echo "  BUILD   bzImage and modules (debug kernel)"
start=$(date +%s)
if ! make -C "$linux" -j"$(nproc)" -s bzImage modules >"$linux.build.log" 2>&1; then
	grep -E 'error|Error' "$linux.build.log" | head -20
	echo "debug-kernel: the build failed, see $linux.build.log" >&2
	exit 1
fi
echo "  BUILT   in $(($(date +%s) - start)) s: $(make -C "$linux" -s kernelrelease)"
