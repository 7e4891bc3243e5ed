#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The lazy snapshot demo (examples/wtsnap-demo.c) in one boot of the test
# machine, its console shown as it runs.
#
#   run-demo.sh INITRAMFS LOG [demo arguments...]
#
# Fails if the demo fails or the machine's kernel logged a problem (the
# same checks as the tests: scripts/parse-console.awk).
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
initramfs=$1 log=$2
shift 2
args=$(IFS=,; echo "$*")

# The guest's memory and the snapshot file both live in the machine's RAM.
export QEMU_MEM=${QEMU_MEM:-6144}
boot() {
	local qemu

	: >"$log"
	"$top/scripts/run-qemu.sh" --log "$log" --stall 300 "$initramfs" \
		"wtrack.config=${CONFIG:-default} wtrack.demo=$args" &
	qemu=$!
	# Show the console from the demo's start, progress bar included.
	until grep -q '^@@RUN' "$log" 2>/dev/null || ! kill -0 $qemu 2>/dev/null; do
		sleep 1
	done
	tail -n +"$(grep -n -m1 '^@@RUN' "$log" | cut -d: -f1)" -f --pid=$qemu "$log"
	wait $qemu
}

# QEMU dying or freezing before the demo ended (shared PLATFORM notes;
# run-qemu.sh: 3 for silence) gets one more boot; a failed demo does not.
boot
status=$?
if [ $status -ne 0 ] && ! grep -q '^@@END 1 demo/wtsnap-demo' "$log"; then
	echo "QEMU failed (exit $status) before the demo ended; booting once more"
	cp "$log" "$log.failed"
	boot
	status=$?
fi

klog=$(mktemp)
trap 'rm -f "$klog"' EXIT
records=$(awk -v klog="$klog" -f "$top/scripts/parse-console.awk" "$log")
if [ -s "$klog" ]; then
	echo "the test machine's kernel logged problems:"
	cut -d' ' -f2- "$klog"
	exit 1
fi
if ! grep -q '^RESULT 1 demo/wtsnap-demo 0 ' <<<"$records"; then
	echo "the demo failed (QEMU exit $status); console log: $log"
	exit 1
fi
