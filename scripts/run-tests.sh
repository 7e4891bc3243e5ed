#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Run the test suites inside the QEMU machine under each KVM configuration
# and report one TAP line per test, then "N passed, N failed, N skipped".
#
# A machine that freezes (silent console) or a QEMU that dies is a QEMU
# fault, not a test result: the boot resumes at the interrupted test, at
# most $RETRIES times per test; a test that was interrupted more often
# fails.  A test that failed on its own is not retried, unless
# selftests/upstream.expect lists it as flaky in that configuration: then it
# gets up to $FLAKY_RUNS runs in all, each in a fresh boot, and the last one
# counts.  Any problem in the guest's kernel log (WARN, BUG, oops, lockdep,
# KASAN...) fails the test during which it was logged, with no rerun, or the
# configuration when outside any test.
#
# usage: run-tests.sh INITRAMFS RESULTS_DIR
#   CONFIGS="default:wtrack,upstream ..."  what to run where
#   ONLY=<suite>/<test>                    one test only
#   SLOW=N                                 N times every test's timeout
#   TEST_ENV="VAR=value ..."               environment of the tests (on the
#                                          guest's command line, which the
#                                          kernel hands to /init)
#   HOST_TAP=<file>                        TAP of tests already run on the
#                                          host, reported as host/... and
#                                          counted with the rest
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
initramfs=$1 out=$2
CONFIGS=${CONFIGS:-"default:wtrack,upstream npt0:wtrack,upstream tdp_mmu0:wtrack,upstream vmware:wtrack"}
RETRIES=${RETRIES:-2}
FLAKY_RUNS=${FLAKY_RUNS:-3}
STALL=${STALL:-120}

rm -rf "$out" && mkdir -p "$out"

# Boot as often as needed to run every test of one configuration once.
# Writes $out/<config>.records: RESULT/INTERRUPTED/FATAL/OUTSIDE lines.
run_config() {
	local config=$1 suites=$2 first=0 boot=0 faults=0
	local rec=$out/$config.records
	local -A interrupted=()
	: >"$rec"
	case ",$suites," in
	*,upstream,*) "$top/scripts/upstream-tests.sh" notrun "$config" | sed 's/^/NOTRUN /' >>"$rec" ;;
	esac
	while :; do
		boot=$((boot + 1))
		local log=$out/$config.boot$boot.log
		"$top/scripts/run-qemu.sh" --log "$log" --stall "$STALL" "$initramfs" \
			"wtrack.config=$config wtrack.suites=$suites wtrack.first=$first ${ONLY:+wtrack.only=$ONLY} ${SLOW:+wtrack.slow=$SLOW} ${TEST_ENV:-}"
		local qrc=$?
		local parsed
		parsed=$(awk -v klog="$out/$config.klog" -f "$top/scripts/parse-console.awk" "$log")
		grep -E '^(RESULT|FATAL|OUTSIDE) ' <<<"$parsed" >>"$rec"
		grep -q '^DONE' <<<"$parsed" && [ $qrc = 0 ] && break

		local why="QEMU exited with status $qrc"
		[ $qrc = 3 ] && why="the machine froze (console silent for ${STALL}s)"
		local intr
		intr=$(grep '^INTERRUPTED ' <<<"$parsed")
		if [ -z "$intr" ]; then
			# Died between tests or before the first one.
			local last
			last=$(grep '^RESULT ' <<<"$parsed" | tail -1 | awk '{print $2}')
			[ -n "$last" ] && first=$((last + 1))
			faults=$((faults + 1))
			if [ $faults -gt "$RETRIES" ]; then
				echo "FATAL $why, $faults times outside tests" >>"$rec"
				break
			fi
			echo "# $config: $why outside a test; booting again" >&2
			continue
		fi
		local idx name
		read -r _ idx name <<<"$intr"
		interrupted[$idx]=$(( ${interrupted[$idx]:-0} + 1 ))
		if [ "${interrupted[$idx]}" -gt "$RETRIES" ]; then
			echo "RESULT $idx $name qemu-fault 0 0 $why, ${interrupted[$idx]} times" >>"$rec"
			first=$((idx + 1))
		else
			echo "# $config: $why during $name; retrying it in a fresh boot" >&2
			first=$idx
		fi
	done
	rerun_flaky "$config" "$suites"
}

# Run each failed flaky test again in fresh boots until it passes or has
# run $FLAKY_RUNS times; its RESULT record becomes that of the last run,
# with "runs N" appended.
rerun_flaky() {
	local config=$1 suites=$2 rec=$out/$config.records
	local idx name rc secs problems runs
	while read -r _ idx name rc secs problems; do
		[ -n "$("$top/scripts/upstream-tests.sh" flaky "$config" "${name#upstream/}")" ] || continue
		runs=1
		while [ "$rc" != 0 ] && [ "$rc" != 4 ] && [ "$problems" = 0 ] && [ $runs -lt "$FLAKY_RUNS" ]; do
			runs=$((runs + 1))
			echo "# $config: $name failed (exit $rc) and is known to be flaky; run $runs of $FLAKY_RUNS" >&2
			local log=$out/$config.rerun$idx-$runs.log parsed result
			"$top/scripts/run-qemu.sh" --log "$log" --stall "$STALL" "$initramfs" \
				"wtrack.config=$config wtrack.suites=$suites wtrack.first=$idx wtrack.only=$name ${SLOW:+wtrack.slow=$SLOW} ${TEST_ENV:-}"
			parsed=$(awk -v klog="$out/$config.klog" -f "$top/scripts/parse-console.awk" "$log")
			grep -E '^(FATAL|OUTSIDE) ' <<<"$parsed" >>"$rec"
			result=$(grep "^RESULT $idx " <<<"$parsed") || continue
			read -r _ _ _ rc secs problems <<<"$result"
		done
		[ $runs = 1 ] && continue
		sed -i "s|^RESULT $idx .*|RESULT $idx $name $rc $secs $problems runs $runs|" "$rec"
	done < <(grep -E '^RESULT [0-9]+ upstream/[^ ]+ [0-9]+ ' "$rec")
}

# Turn one configuration's records into TAP lines; counts go to $out/counts.
report_config() {
	local config=$1 n pass=0 fail=0 skip=0
	while read -r kind idx name rc secs problems rest; do
		local label="$config/$name" status directive=""
		case "$kind" in
		NOTRUN)
			echo "ok - $config/upstream/$idx # SKIP not run: $name $rc $secs $problems $rest"
			skip=$((skip + 1)); continue ;;
		FATAL)
			echo "not ok - $config # ${idx} ${name} ${rc} ${secs} ${problems} ${rest}"
			fail=$((fail + 1)); continue ;;
		OUTSIDE)
			echo "not ok - $config: kernel log problems outside any test:"
			awk '$1 == 0 { $1 = "#  "; print }' "$out/$config.klog"
			fail=$((fail + 1)); continue ;;
		esac
		local expected="" flaky=""
		if [ "${name%%/*}" = upstream ]; then
			expected=$("$top/scripts/upstream-tests.sh" fail "$config" "${name#upstream/}")
			flaky=$("$top/scripts/upstream-tests.sh" flaky "$config" "${name#upstream/}")
		fi
		if [ "$rc" = qemu-fault ]; then
			status=fail directive=" # QEMU fault: $rest"
		elif [ "$problems" != 0 ]; then
			status=fail directive=" # kernel log problems (exit $rc)"
		elif [ "$rc" = 0 ]; then
			status=pass
			[ -n "$expected" ] && directive=" # passed, though selftests/upstream.expect says it fails here"
			[ "${rest% *}" = runs ] &&
				directive=" # passed on run ${rest#* } of $FLAKY_RUNS; flaky here: $flaky"
		elif [ "$rc" = 4 ]; then
			status=skip
			directive=" # SKIP $(skip_reason "$out/logs/$config/$idx.log")"
		elif [ -n "$expected" ]; then
			status=skip directive=" # SKIP expected failure under emulation (exit $rc): $expected"
		elif [ "$rc" = 137 ]; then
			status=fail directive=" # timed out"
		elif [ "${rest% *}" = runs ]; then
			status=fail directive=" # exit $rc in all ${rest#* } runs"
		else
			status=fail directive=" # exit $rc"
		fi
		# Our kselftest_harness tests: one TAP line per subtest, so
		# that a skipped case (e.g. VMX under emulation) shows as such.
		if [ "${name%%/*}" = wtrack ] && [ "$problems" = 0 ] && [ "$rc" != qemu-fault ] &&
		   [ -n "$(harness_subtests "$out/logs/$config/$idx.log")" ]; then
			local st sub why
			while read -r st sub why; do
				case $st in
				pass) echo "ok - $label/$sub"; pass=$((pass + 1)) ;;
				skip) echo "ok - $label/$sub # SKIP $why"; skip=$((skip + 1)) ;;
				fail) echo "not ok - $label/$sub"; fail=$((fail + 1)) ;;
				esac
			done < <(harness_subtests "$out/logs/$config/$idx.log")
			case $rc in
			0) continue ;;
			1) [ -n "$(harness_subtests "$out/logs/$config/$idx.log" | grep '^fail')" ] && {
				tail -n 25 "$out/logs/$config/$idx.log" | sed 's/^/#   /'; continue; } ;;
			esac
		fi
		case $status in
		pass) echo "ok - $label ($secs s)$directive"; pass=$((pass + 1)) ;;
		skip) echo "ok - $label$directive"; skip=$((skip + 1)) ;;
		fail)
			echo "not ok - $label ($secs s)$directive"
			fail=$((fail + 1))
			awk -v i="$idx" '$1 == i { $1 = "#  "; print }' "$out/$config.klog" 2>/dev/null
			tail -n 25 "$out/logs/$config/$idx.log" 2>/dev/null | sed 's/^/#   /'
			;;
		esac
	done <"$out/$config.records"
	echo "$pass $fail $skip" >>"$out/counts"
}

# The host tests' TAP (the library's, run before the QEMU part): one line
# per result, labelled host/...; a missing file or an unmet plan fails.
report_host() {
	local pass=0 fail=0 skip=0 plan="" n=0 line name
	if [ ! -r "$HOST_TAP" ]; then
		echo "not ok - host # no results in $HOST_TAP: the host tests did not build or run"
		echo "0 1 0" >>"$out/counts"
		return
	fi
	while IFS= read -r line; do
		name=${line#*ok }
		name=${name#* }
		name=${name#- }
		case $line in
		1..*) plan=${line#1..} ;;
		"not ok "*) echo "not ok - host/$name"; fail=$((fail + 1)); n=$((n + 1)) ;;
		"ok "*"# SKIP"*) echo "ok - host/$name"; skip=$((skip + 1)); n=$((n + 1)) ;;
		"ok "*) echo "ok - host/$name"; pass=$((pass + 1)); n=$((n + 1)) ;;
		"#"*) echo "$line" ;;
		esac
	done <"$HOST_TAP"
	if [ "$plan" != "$n" ]; then
		echo "not ok - host # planned ${plan:-no} tests, $n reported"
		fail=$((fail + 1))
	fi
	echo "$pass $fail $skip" >>"$out/counts"
}

# Why a test skipped: its kselftest SKIP line, else its last words.
skip_reason() {
	local why
	why=$(grep -m1 -o 'SKIP.*' "$1" 2>/dev/null | sed 's/^SKIP[ -]*//')
	[ -n "$why" ] || why=$(grep -v '^Random seed' "$1" 2>/dev/null | tail -n 1)
	echo "$why"
}

# "pass|skip|fail <test> [reason]" for each test a kselftest_harness
# program reported.  A skip's reason is printed by the forked test itself,
# on an unnamed "ok N # SKIP ..." line just before the harness's own line.
harness_subtests() {
	awk '
	/^ok [0-9]+ # SKIP/ { reason = $0; sub(/^ok [0-9]+ # SKIP[ -]*/, "", reason); next }
	/^(not )?ok [0-9]+ [A-Za-z0-9_]+\.[A-Za-z0-9_]+/ {
		failed = /^not /
		name = failed ? $4 : $3
		sub(/^[^.]*\./, "", name)
		if (failed)
			print "fail", name
		else if (/# SKIP/) {
			why = $0; sub(/.*# SKIP */, "", why)
			if (why == "unknown" && reason != "") why = reason
			print "skip", name, why
		} else
			print "pass", name
		reason = ""
	}' "$1" 2>/dev/null
}

# Per-test output, for the report and for people.
split_logs() {
	local config=$1
	mkdir -p "$out/logs/$config"
	cat "$out/$config".boot*.log "$out/$config".rerun*.log 2>/dev/null | awk -v d="$out/logs/$config" '
		{ sub(/\r$/, "") }
		/^@@RUN / { f = d "/" $2 ".log"; printf "" > f; next }
		/^@@END / { close(f); f = ""; next }
		/^@@O / && f != "" { print substr($0, 5) >> f }'
}

for spec in $CONFIGS; do
	config=${spec%%:*}
	echo "# booting the $config configuration (suites: ${spec#*:})"
	run_config "$config" "${spec#*:}" &
	# Two QEMUs at a time: each uses one host core (single-threaded TCG).
	[ "$(jobs -rp | wc -l)" -ge 2 ] && wait -n
done
wait

: >"$out/counts"
[ -n "${HOST_TAP:-}" ] && report_host
for spec in $CONFIGS; do
	config=${spec%%:*}
	split_logs "$config"
	report_config "$config"
done

read -r passed failed skipped < <(awk '{ p += $1; f += $2; s += $3 } END { print p, f, s }' "$out/counts")
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
