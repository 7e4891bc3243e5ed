/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * VMware guest support for KVM on x86: backdoor hypercalls forwarded to
 * userspace, and L0 handling of L2's backdoor.  See
 * Documentation/vmware.rst.
 *
 * The single definition of these numbers.  The kernel includes this header
 * from <linux/kvm.h>; userspace includes it directly.  Numbers are chosen
 * away from upstream KVM's (capabilities up to the high 240s, exit reasons
 * from 40 on): capabilities from 1040 and exit reasons from 1024 to 1031.
 * Write tracking (<linux/kvm_wtrack.h>) uses capabilities from 1024 and
 * exit reasons from 1032.
 */
#ifndef _UAPI_LINUX_KVM_VMWARE_H
#define _UAPI_LINUX_KVM_VMWARE_H

#include <linux/types.h>

/*
 * VMware backdoor hypercalls: KVM_ENABLE_CAP(KVM_CAP_X86_VMWARE_HYPERCALL)
 * on the VM fd with args[0] = 1 makes VMCALL/VMMCALL with EAX =
 * KVM_VMWARE_MAGIC exit to userspace with KVM_EXIT_VMWARE, unless Hyper-V
 * hypercalls are enabled for the vCPU (Hyper-V CPUID and the guest's OS
 * ID set), which then get every VMCALL; args[0] = 0 turns it off again.
 * Other hypercalls are unaffected.
 */
#define KVM_CAP_X86_VMWARE_HYPERCALL		1040

/*
 * KVM_ENABLE_CAP(KVM_CAP_X86_VMWARE_NESTED_BACKDOOR_L0), args[0] = 1: KVM
 * (L0) handles the backdoor accesses L2 makes at CPL3 (I/O ports 0x5658
 * and 0x5659, the pseudo-PMCs, backdoor hypercalls) as it does L1's,
 * instead of leaving them to L1.  Needs kvm.enable_vmware_backdoor.
 */
#define KVM_CAP_X86_VMWARE_NESTED_BACKDOOR_L0	1041

#define KVM_VMWARE_MAGIC		0x564d5868

#define KVM_EXIT_VMWARE			1024

/* kvm_run.vmware for exit reason KVM_EXIT_VMWARE. */
struct kvm_vmware_exit {
#define KVM_EXIT_VMWARE_HCALL		1
	__u32 type;
#define KVM_VMWARE_EXIT_LONG_MODE	(1U << 0)	/* 64-bit hypercall */
#define KVM_VMWARE_EXIT_GUEST_MODE	(1U << 1)	/* made by L2 */
	__u32 flags;
	union {
		/*
		 * The VMware protocol's registers when the guest made the
		 * call, zero-extended from 32 bits outside 64-bit mode.  The
		 * next KVM_RUN loads them back into the guest (truncated
		 * likewise) and moves past the instruction: userspace
		 * returns results by changing them.
		 */
		struct {
			__u32 cpl;
			__u32 pad;
			__u64 rax, rbx, rcx, rdx, rsi, rdi, rbp;
		} hcall;
	};
};

#endif /* _UAPI_LINUX_KVM_VMWARE_H */
