#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Stands in for qemu-system-x86_64 in runner-test.sh: plays the test
# machine's console protocol (scripts/initramfs/init) for the tests of
# $FAKE_PLAN, one "index name behaviour" per line, from wtrack.first on.
# A name without a suite is in wtrack/.  Behaviours: pass, fail, skip, warn
# (passes, logs a WARNING), freeze (hangs silently), abort (QEMU dies), and
# freeze-once/abort-once/fail-once, which misbehave only on the first boot
# that reaches them.
first=0 only=
for a in "$@"; do
	for w in $a; do
		case "$w" in
		wtrack.first=*) first=${w#*=} ;;
		wtrack.only=*) only=${w#*=} ;;
		esac
	done
done
echo "@@BOOT default"
while read -r idx name what; do
	[ "$idx" -lt "$first" ] && continue
	case "$name" in */*) ;; *) name=wtrack/$name ;; esac
	[ -n "$only" ] && [ "$only" != "$name" ] && continue
	echo "@@RUN $idx $name"
	once=$FAKE_STATE/$idx
	case "$what" in
	*-once) [ -e "$once" ] && what=pass; touch "$once"; what=${what%-once} ;;
	esac
	case "$what" in
	pass) rc=0 ;;
	fail) echo "@@O assertion failed"; rc=1 ;;
	skip) echo "@@O 1..0 # SKIP - no such feature"; rc=4 ;;
	warn) echo "@@K [ 1.0] WARNING: CPU: 0 PID: 1 at arch/x86/kvm/x86.c:1 x+0x1"; rc=0 ;;
	freeze) exec sleep 600 ;;
	abort) echo "qemu: tcg_handle_interrupt: assertion failed"; exit 134 ;;
	esac
	echo "@@END $idx $name $rc 0"
done <"$FAKE_PLAN"
echo "@@DONE"
