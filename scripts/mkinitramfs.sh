#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Pack the test machine's initramfs: busybox, Debian's irqbypass and ccp
# modules (the ones our kvm.ko and kvm-amd.ko depend on), our modules, the
# test binaries, the test list and /init.
#
# usage: mkinitramfs.sh [--stock | --debug LINUX] KVMDIR SELFTESTS_OUT OUTPUT
#   --stock: Debian's own KVM modules instead of ours, to tell whether a
#   failure comes from our patches or from the emulated machine.
#   --debug: the modules of the debug kernel built in LINUX (make
#   check-debug), which has no ccp; KVMDIR is not used.
set -euo pipefail

stock= debug=
case "$1" in
--stock) stock=1; shift ;;
--debug) debug=$2; shift 2 ;;
esac
kvmdir=$1 sfout=$2 output=$3
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/kernel/version.mk"
moddir=/lib/modules/$KERNEL_RELEASE/kernel

root=$(mktemp -d "$(dirname "$output")/initramfs.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,dev,proc,sys,tmp,lib/modules,tests/wtrack,tests/upstream,tests/bench,tests/demo}

cp /bin/busybox "$root/bin/busybox"
cp "$top/scripts/initramfs/init" "$root/init"

if [ -n "$debug" ]; then
	for m in virt/lib/irqbypass arch/x86/kvm/kvm arch/x86/kvm/kvm-amd \
		 arch/x86/kvm/kvm-intel; do
		strip --strip-debug -o "$root/lib/modules/$(basename "$m").ko" "$debug/$m.ko"
	done
fi
for m in virt/lib/irqbypass drivers/crypto/ccp/ccp; do
	[ -n "$debug" ] && break
	xz -dc "$moddir/$m.ko.xz" >"$root/lib/modules/$(basename "$m").ko"
done
for m in kvm kvm-amd kvm-intel; do
	if [ -n "$debug" ]; then
		break
	elif [ -n "$stock" ]; then
		xz -dc "$moddir/arch/x86/kvm/$m.ko.xz" >"$root/lib/modules/$m.ko"
	else
		strip --strip-debug -o "$root/lib/modules/$m.ko" "$kvmdir/$m.ko"
	fi
done

# Our tests first, the benchmark (only run by 'make bench'), then the
# upstream suite; "suite timeout name [args]".
list=$root/tests/list
for t in "$sfout"/wtrack/*_test; do
	[ -x "$t" ] || continue
	strip -o "$root/tests/wtrack/$(basename "$t")" "$t"
	echo "wtrack 300 $(basename "$t")" >>"$list"
done
if [ -x "$sfout/wtrack/wtrack_bench" ]; then
	strip -o "$root/tests/bench/wtrack_bench" "$sfout/wtrack/wtrack_bench"
	echo "bench 1200 wtrack_bench" >>"$list"
fi
# The snapshot demo: run by 'make demo' only (wtrack.demo=).
if [ -x "$sfout/examples/wtsnap-demo" ]; then
	strip -o "$root/tests/demo/wtsnap-demo" "$sfout/examples/wtsnap-demo"
fi
"$top/scripts/upstream-tests.sh" list "$sfout/upstream" | while read -r name timeout args; do
	bin=${name%%:*}
	mkdir -p "$root/tests/upstream/$(dirname "$bin")"
	case "$bin" in *.sh) cp "$sfout/upstream/$bin" "$root/tests/upstream/$bin" ;;
	*) strip -o "$root/tests/upstream/$bin" "$sfout/upstream/$bin" ;; esac
	echo "upstream $timeout $name $args" >>"$list"
done
# "configs upstream/name": the init skips these in the configurations named.
"$top/scripts/upstream-tests.sh" notrun-some | sed 's|^\([^ ]*\) |\1 upstream/|' >"$root/tests/notrun"

(cd "$root" && find . | cpio -o -H newc --quiet) | gzip -1 >"$output.tmp"
mv "$output.tmp" "$output"
