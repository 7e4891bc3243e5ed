#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Boot Debian's kernel image with our initramfs in QEMU (software emulation
# of an AMD CPU with SVM, so KVM runs nested inside it).
#
#   run-qemu.sh --interactive INITRAMFS [config]
#       a shell on the test machine (config: default, tdp_mmu0, npt0, vmware)
#   run-qemu.sh --log FILE [--stall SECONDS] INITRAMFS "extra cmdline"
#       run the tests named by the cmdline; the console goes to FILE.  The
#       machine is killed when the console stays silent for SECONDS (the
#       guest prints a heartbeat every 10 s, so silence means QEMU froze).
#       Exit status: 0 the guest powered off, 3 killed for silence,
#       other: QEMU's own.
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/kernel/version.mk"
# KERNEL: another kernel image, e.g. the debug kernel of make check-debug.
kernel=${KERNEL:-/boot/vmlinuz-$KERNEL_RELEASE}

# QEMU: the runner's own test substitutes a fake one.
QEMU=${QEMU:-qemu-system-x86_64}

# TCG_THREAD=multi: one host thread per emulated CPU, for measurements
# (make demo TCG_THREAD=multi, Documentation/wtrack-performance.rst).
# The default and the tests keep thread=single: multi-threaded TCG
# sometimes aborts under heavy instruction emulation (shared PLATFORM
# notes), and QEMU 7.2's has had the machine's kernel oops on an int3 of
# its own text patching.
tcg_thread=${TCG_THREAD:-single}

qemu_cmd() {
	echo "$QEMU" -accel tcg,thread="$tcg_thread" -cpu EPYC,+svm \
		-m "${QEMU_MEM:-2048}" -smp 2 -kernel "$kernel" -initrd "$1" \
		-nographic -no-reboot -net none -serial mon:stdio
}

if [ "${1:-}" = --interactive ]; then
	exec $(qemu_cmd "$2") -append "console=ttyS0 quiet panic=-1 wtrack.shell=1 wtrack.config=${3:-default}"
fi

log= stall=120
while [ $# -gt 2 ]; do
	case "$1" in
	--log) log=$2; shift 2 ;;
	--stall) stall=$2; shift 2 ;;
	*) break ;;
	esac
done
initramfs=$1 extra=$2

$(qemu_cmd "$initramfs") -append "console=ttyS0 quiet panic=-1 $extra" \
	</dev/null >"$log" 2>&1 &
qpid=$!

last_size=-1 quiet_for=0
while kill -0 $qpid 2>/dev/null; do
	sleep 1
	size=$(stat -c %s "$log")
	if [ "$size" = "$last_size" ]; then
		quiet_for=$((quiet_for + 1))
		if [ $quiet_for -ge "$stall" ]; then
			kill -9 $qpid 2>/dev/null
			wait $qpid 2>/dev/null
			echo "@@STALL silent for ${stall}s, QEMU killed" >>"$log"
			exit 3
		fi
	else
		last_size=$size quiet_for=0
	fi
done
wait $qpid
