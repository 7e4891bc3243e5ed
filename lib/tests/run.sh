#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Run libwtrack's host tests and print TAP: one line per test case of the
# plain builds, one per sanitizer build (ASan+UBSan, TSan), and the checks
# of the exported symbols and of the documentation.  Two programs: the
# ring consumer's (ring_test) and the snapshot file's (snapfile_test).
#
# usage: run.sh BUILD_DIR [KERNEL_DOC]
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
lib=$(cd "$here/.." && pwd)
o=$1 kdoc=${2:-}
n=0 status=0

result() {	# ok|fail|skip NAME [WHY]
	n=$((n + 1))
	case $1 in
	ok) echo "ok $n - $2" ;;
	skip) echo "ok $n - $2 # SKIP $3" ;;
	*) echo "not ok $n - $2${3:+ # $3}"; status=1 ;;
	esac
}

# Run a TAP program: its output in $tap, exit status in $rc, the number
# of cases it planned in $plan and of those it reported in $got.
run_tap() {
	tap=$(timeout 120 "$@" 2>&1)
	rc=$?
	plan=$(sed -n 's/^1\.\.\([0-9]*\)$/\1/p' <<<"$tap" | head -1)
	plan=${plan:-none}
	got=$(grep -cE '^(not )?ok ' <<<"$tap")
}

# The plain build: each case is a result.
plain() {	# PREFIX PROGRAM
	run_tap "$2"
	while IFS= read -r line; do
		case $line in
		"ok "*) result ok "$1/${line#ok [0-9]* - }" ;;
		"not ok "*) result fail "$1/${line#not ok [0-9]* - }" ;;
		"#"*) echo "$line" ;;
		esac
	done <<<"$tap"
	if [ "$plan" != "$got" ] || { [ "$rc" != 0 ] && ! grep -q '^not ok' <<<"$tap"; }; then
		result fail "$1: planned $plan cases, $got ran, exit status $rc"
		tail -n 5 <<<"$tap" | sed 's/^/#   /'
	fi
}

# The sanitizer builds: a report or a failed case fails the build's line.
sanitized() {	# PREFIX PROGRAM
	local san label
	for san in asan tsan; do
		label=$([ $san = asan ] && echo asan+ubsan || echo tsan)
		TSAN_OPTIONS=halt_on_error=1 run_tap "$2-$san"
		if [ "$rc" = 0 ] && [ "$plan" = "$got" ] && ! grep -q '^not ok' <<<"$tap"; then
			result ok "$1 under $label ($got cases)"
		elif grep -q 'Sanitizer: unexpected memory mapping' <<<"$tap"; then
			# Old TSan and a kernel with more mmap randomness than it knows.
			result skip "$1 under $label" "the sanitizer cannot run here (vm.mmap_rnd_bits)"
		else
			result fail "$1 under $label" "exit status $rc, $got of $plan cases ran"
			grep -vE '^ok ' <<<"$tap" | head -n 30 | sed 's/^/#   /'
		fi
	done
}

plain ring "$o/tests/ring_test"
sanitized ring "$o/tests/ring_test"
plain snap "$o/tests/snapfile_test"
sanitized snap "$o/tests/snapfile_test"

# Only the public API leaves the shared library.
want=$(sed -n 's/^[[:space:]]*\(wt\(rack\|snap\)_[a-z_]*\);$/\1/p' "$lib/libwtrack.map" | sort)
have=$(nm -D --defined-only "$o/libwtrack.so" |
	awk '$2 != "A" { sub(/@.*/, "", $3); print $3 }' | sort)
if [ "$want" = "$have" ]; then
	result ok "exports: the $(wc -w <<<"$want") functions of libwtrack.map"
else
	result fail "exports" "libwtrack.so exports other symbols than libwtrack.map lists"
	diff <(echo "$want") <(echo "$have") | sed 's/^/#   /'
fi

# Every public function has its kernel-doc comment and a man page.
hdrs="$lib/include/wtrack.h $lib/include/wtsnap.h"
missing= decl=
for hdr in $hdrs; do
	fns=$(sed -n 's/^[a-z].* \**\(wt\(rack\|snap\)_[a-z_]*\)(.*/\1/p' "$hdr" | sort)
	decl="$decl $fns"
	for f in $fns; do
		grep -q "^ \* $f() - " "$hdr" || missing="$missing $f(kernel-doc)"
		[ -f "$lib/man/$f.3" ] || missing="$missing $f(man)"
		grep -qx "[[:space:]]*$f;" "$lib/libwtrack.map" || missing="$missing $f(map)"
	done
done
if [ -z "$missing" ] && [ -n "${decl// /}" ]; then
	result ok "doc: kernel-doc, man page and export of each function"
else
	result fail "doc: missing:${missing:- no functions found}"
fi

for hdr in $hdrs; do
	if [ -n "$kdoc" ] && [ -f "$kdoc" ]; then
		out=$(perl "$kdoc" -none -Wall "$hdr" 2>&1)
		if [ -z "$out" ]; then
			result ok "doc: kernel-doc -Wall on ${hdr##*/}"
		else
			result fail "doc: kernel-doc -Wall on ${hdr##*/}"
			sed 's/^/#   /' <<<"$out"
		fi
	else
		result skip "doc: kernel-doc -Wall on ${hdr##*/}" "no scripts/kernel-doc (make tree)"
	fi
done

# Pages that are links (.so) must point at a page; the others must format.
links=
for p in "$lib"/man/*.[37]; do
	target=$(sed -n '1s/^\.so man[37]\///p' "$p")
	[ -z "$target" ] || [ -f "$lib/man/$target" ] || links="$links ${p##*/}"
done
if command -v groff >/dev/null; then
	out=$(for p in "$lib"/man/*.[37]; do
		grep -q '^\.so ' "$p" && continue
		groff -man -ww -z "$p" 2>&1 | sed "s|^|${p##*/}: |"
	done)
	if [ -z "$out$links" ]; then
		result ok "doc: groff -ww on the man pages"
	else
		result fail "doc: groff -ww on the man pages${links:+; broken links:$links}"
		sed 's/^/#   /' <<<"$out"
	fi
elif [ -n "$links" ]; then
	result fail "doc: man pages: broken links:$links"
else
	result skip "doc: groff -ww on the man pages" "groff is not installed"
fi

echo "1..$n"
exit $status
