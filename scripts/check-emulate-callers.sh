#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Every caller of KVM's instruction emulator must pass a negative result
# on: -EFAULT is a write that kvm-wtrack stopped for userspace, and a
# caller that takes it for success re-runs the instruction, which stops
# again, forever (VMX's handle_invalid_guest_state() did).  VMX cannot run
# in the test machine, so this reads the code instead: each call's result
# must be returned, or assigned and then returned or compared with 0
# ("<= 0", "< 0"); a call tested for truth ("if (!call(...))") is allowed
# only with EMULTYPE_SKIP, which writes nothing, or in a function listed
# below.
#
# usage: check-emulate-callers.sh LINUX
set -euo pipefail

linux=$1

# Functions whose truth test is right, and why.
declare -A allowed=(
	# Its callers pass EMULTYPE_SKIP (with SKIP_SOFT_INT): it only decodes.
	[__svm_skip_emulated_instruction]=1
)

calls='(kvm_emulate_instruction|kvm_emulate_instruction_from_buffer|x86_emulate_instruction)'

awk -v calls="$calls" -v allowed="${!allowed[*]}" '
BEGIN {
	n = split(allowed, a, " ")
	for (i = 1; i <= n; i++)
		ok_func[a[i]] = 1
	bad = 0
}
# The function a line is in: a definition starts in column 0.
/^[a-z].*\(/ && !/;[[:space:]]*$/ {
	fn = $0
	sub(/\(.*/, "", fn)
	sub(/.*[ *]/, "", fn)
}
function report(why) {
	printf "%s:%d: %s: %s\n", FILENAME, FNR, fn, why
	bad++
}
# Lines of an assignment waiting for its check: the variable must be
# returned or compared with 0 before the function ends.
pending != "" {
	if ($0 ~ "return " pending ";" || $0 ~ "\\(" pending " <=? 0\\)") {
		pending = ""
	} else if ($0 ~ /^}/) {
		report("the result of " pending_call " is never returned or compared with 0")
		pending = ""
	}
}
$0 ~ calls "\\(" {
	line = $0
	if (line ~ /^[ \t]*(\*|\/\*)/ || line ~ /^(int|static int) [a-z0-9_]*emulate_instruction/)
		next
	if (line ~ "return[ \t]+" calls "\\(")
		next
	if (match(line, "([a-z_]+)[ \t]*=[ \t]*" calls "\\(")) {
		v = substr(line, RSTART, RLENGTH)
		sub(/[ \t]*=.*/, "", v)
		pending = v
		pending_call = line
		gsub(/^[ \t]+/, "", pending_call)
		next
	}
	if (line ~ "if[ \t]*\\(!?[ \t]*" calls "\\(") {
		if (line ~ /EMULTYPE_SKIP/ || (fn in ok_func))
			next
		report("tests the result for truth: a negative one (-EFAULT) is taken for success")
		next
	}
	report("uses the result in a way this check does not know")
}
END {
	if (bad)
		printf "%d caller(s) of the emulator may swallow -EFAULT\n", bad
	exit bad != 0
}
' $(find "$linux/arch/x86/kvm" -name '*.c' | sort)
