# SPDX-License-Identifier: GPL-2.0
#
# Parse one boot's console log (see scripts/initramfs/init) into records:
#   BOOT <config>
#   RESULT <index> <suite/test> <exit code> <seconds> <kernel-log problems>
#   INTERRUPTED <index> <suite/test>     (the machine died during this test)
#   FATAL <message>
#   OUTSIDE <kernel-log problems outside any test>
#   DONE
# Problem lines of the guest's kernel log go to the file named by -v klog=,
# as "<index> <line>" (index 0: outside any test).

# Boot notices are not problems: the debug kernel's banners ("RCU lockdep
# checking is enabled", "kmemleak: Kernel memory leak detector
# initialized") and the SRSO advice on the emulated EPYC ("Speculative
# Return Stack Overflow: WARNING: See ... for mitigation options").
function bad(line) {
	return line ~ /(BUG:|WARNING:|Oops|general protection fault|Kernel panic|KASAN|UBSAN|suspected memory leak|unreferenced object|lockdep|possible (circular|recursive) locking|inconsistent lock state|INFO: task .* blocked|hung_task|Call Trace:|RCU stall|rcu_sched detected stall)/ &&
	       line !~ /traps:|RCU lockdep checking is enabled|Speculative Return Stack Overflow: WARNING: See/
}

function report(line) {
	if (cur == "")
		outside++
	else
		problems++
	print (cur == "" ? 0 : cur), line >> klog
}

{ sub(/\r$/, "") }

/^@@BOOT / { print "BOOT", $2; next }
/^@@RUN / { cur = $2; name = $3; problems = 0; next }
/^@@END / { print "RESULT", $2, $3, $4, $5, problems; cur = ""; next }
/^@@DONE/ { print "DONE"; next }
/^@@FATAL/ { sub(/^@@FATAL /, ""); print "FATAL", $0; next }
/^@@(O|HB|STALL)/ { next }
/^@@K / {
	line = substr($0, 5)
	if (bad(line))
		report(line)
	next
}
# Console output from the kernel itself (printk at high levels).
{
	if (bad($0) && $0 !~ /^qemu-system/)
		report($0)
}
END {
	if (cur != "")
		print "INTERRUPTED", cur, name
	if (outside)
		print "OUTSIDE", outside
}
