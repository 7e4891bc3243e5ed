#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Test the test runner itself, on the host, against a fake QEMU
# (fake-qemu.sh): a machine that freezes once is resumed and the test
# passes; a QEMU that keeps dying fails its test after bounded retries; a
# real failure runs once and fails; a flaky upstream test that fails once
# passes on its rerun, one that keeps failing fails after three runs; a
# test not run in this configuration is a skip, one not run in another is
# not reported; a WARNING in the kernel log fails a test that exited 0;
# skips stay skips; the summary counts and the exit status follow.  Then
# the host tests' TAP (HOST_TAP): its results join the count, an unmet
# plan or a missing file fails.  Last the demo's runner: one more boot
# after QEMU died, none after the demo failed.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat >"$work/plan" <<'PLAN'
1 t_pass pass
2 t_freeze freeze-once
3 t_fail fail
4 t_warn warn
5 t_abort abort
6 t_skip skip
7 t_after pass
8 upstream/t_flaky fail-once
9 upstream/t_flaky_fails fail
10 upstream/t_expected_fail fail
PLAN
cat >"$work/expect" <<'EXPECT'
t_flaky          default  flaky  -  fails now and then
t_flaky_fails    all      flaky  -  fails now and then
t_expected_fail  default  fail   -  cannot work here
t_slow_here      default  notrun -  too slow here
t_slow_there     npt0     notrun -  too slow there
EXPECT
mkdir -p "$work/state"

out=$(FAKE_PLAN=$work/plan FAKE_STATE=$work/state QEMU=$here/fake-qemu.sh \
      UPSTREAM_EXPECT=$work/expect CONFIGS=default:wtrack,upstream STALL=3 RETRIES=2 \
      "$top/scripts/run-tests.sh" /dev/null "$work/results" 2>&1)
rc=$?
all=$out

pass=0 fail=0
expect() {
	if grep -qE "$1" <<<"$out"; then
		pass=$((pass + 1))
	else
		fail=$((fail + 1))
		echo "runner-test: missing: $1"
	fi
}
expect '^ok - default/wtrack/t_pass'
expect '^ok - default/wtrack/t_freeze'
expect 'froze .* during wtrack/t_freeze; retrying'
expect '^not ok - default/wtrack/t_fail .*# exit 1'
expect '^not ok - default/wtrack/t_warn .*# kernel log problems'
expect 'WARNING: CPU: 0 PID: 1 at arch/x86/kvm/x86.c'
expect '^not ok - default/wtrack/t_abort .*# QEMU fault: QEMU exited with status 134, 3 times'
expect '^ok - default/wtrack/t_skip # SKIP no such feature'
expect '^ok - default/wtrack/t_after'
expect '^ok - default/upstream/t_flaky \(0 s\) # passed on run 2 of 3; flaky here: fails now and then'
expect '^not ok - default/upstream/t_flaky_fails .*# exit 1 in all 3 runs'
expect '^ok - default/upstream/t_expected_fail # SKIP expected failure under emulation \(exit 1\): cannot work here'
expect '^ok - default/upstream/t_slow_here # SKIP not run: too slow here'
expect '^4 passed, 4 failed, 3 skipped$'

runs=$(cat "$work"/results/default.boot*.log "$work"/results/default.rerun*.log |
	grep -c '^@@RUN 3 ')
if [ "$runs" = 1 ] && [ "$rc" != 0 ]; then
	pass=$((pass + 1))
else
	fail=$((fail + 1))
	echo "runner-test: a real failure ran $runs times; runner exit status $rc"
fi

# The host tests' TAP, next to one passing QEMU test.
echo "1 t_pass pass" >"$work/plan1"
cat >"$work/host.tap" <<'TAP'
ok 1 - ring/basic
not ok 2 - ring/wrap
# ring_test.c:1: seq == 3, expected 2
ok 3 - doc/kernel-doc # SKIP no tree
1..4
TAP
host() {
	FAKE_PLAN=$work/plan1 FAKE_STATE=$work/state QEMU=$here/fake-qemu.sh \
	UPSTREAM_EXPECT=$work/expect CONFIGS=default:wtrack HOST_TAP=$1 \
	"$top/scripts/run-tests.sh" /dev/null "$work/results-host" 2>&1
}
out=$(host "$work/host.tap")
hrc=$?
all=$all$'\n'$out
expect '^ok - host/ring/basic$'
expect '^not ok - host/ring/wrap$'
expect '^# ring_test.c:1: seq == 3, expected 2$'
expect '^ok - host/doc/kernel-doc # SKIP no tree$'
expect '^not ok - host # planned 4 tests, 3 reported$'
expect '^ok - default/wtrack/t_pass'
expect '^2 passed, 2 failed, 1 skipped$'
out=$(host "$work/missing.tap")
all=$all$'\n'$out
expect '^not ok - host # no results in .*missing.tap'
expect '^1 passed, 1 failed, 0 skipped$'
if [ "$hrc" != 0 ]; then
	pass=$((pass + 1))
else
	fail=$((fail + 1))
	echo "runner-test: failed host tests did not fail the run"
fi

# The demo: a QEMU that dies once gets one more boot; one that keeps
# dying, and a failed demo, fail.
demo() {
	echo "1 demo/wtsnap-demo $1" >"$work/plan"
	rm -rf "$work/state" && mkdir "$work/state"
	out=$(FAKE_PLAN=$work/plan FAKE_STATE=$work/state QEMU=$here/fake-qemu.sh \
	      "$top/scripts/run-demo.sh" /dev/null "$work/demo.log" 2>&1)
	drc=$?
	all=$all$'\n'$out
}
expect_rc() {
	if [ "$drc" "$1" 0 ]; then
		pass=$((pass + 1))
	else
		fail=$((fail + 1))
		echo "runner-test: $2"
	fi
}
demo abort-once
expect 'QEMU failed \(exit 134\) before the demo ended; booting once more'
expect_rc = "a demo whose QEMU died once failed"
demo abort
expect 'the demo failed \(QEMU exit 134\)'
expect_rc != "a demo whose QEMU kept dying passed"
demo fail
expect 'the demo failed \(QEMU exit 0\)'
expect_rc != "a failed demo passed"
if grep -q 'booting once more' <<<"$out"; then
	fail=$((fail + 1))
	echo "runner-test: a failed demo was booted again"
fi

if [ $fail != 0 ] || [ -n "${VERBOSE:-}" ]; then
	echo "runner-test: the runner's output was:"
	sed 's/^/  | /' <<<"$all"
fi
echo "runner-test: $pass passed, $fail failed"
[ $fail = 0 ]
