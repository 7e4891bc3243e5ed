/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * kvm-wtrack: synchronous notification of guest writes to guest-physical
 * pages that userspace write-protected.
 *
 * This header is the single definition of the kvm-wtrack ABI.  The kernel
 * includes it from <linux/kvm.h>; userspace includes it directly.  See
 * Documentation/wtrack-api.rst.
 *
 * Numbers are chosen away from upstream KVM's: capabilities 0..238 exist in
 * Linux 6.12 and later kernels have assigned or claimed up to the high 240s,
 * so kvm-wtrack's capabilities start at 1024.
 */
#ifndef _UAPI_LINUX_KVM_WTRACK_H
#define _UAPI_LINUX_KVM_WTRACK_H

#include <linux/types.h>
#include <linux/ioctl.h>

#ifndef KVMIO
#define KVMIO 0xAE
#endif

/*
 * KVM_CHECK_EXTENSION(KVM_CAP_X86_WRITE_TRACK) returns the mask of enable
 * flags this kernel supports for the VM (0: not available).
 * KVM_ENABLE_CAP(KVM_CAP_X86_WRITE_TRACK) on the VM fd turns tracking on;
 * args[0] holds the flags below, args[1..3] must be zero.
 */
#define KVM_CAP_X86_WRITE_TRACK		1024

/*
 * Report a guest write to a protected page by stopping the vCPU before the
 * write lands: KVM_RUN fails with EFAULT and exit_reason
 * KVM_EXIT_MEMORY_FAULT.
 */
#define KVM_WTRACK_ENABLE_EXIT		(1ULL << 0)

#define KVM_WTRACK_ENABLE_VALID_MASK	(KVM_WTRACK_ENABLE_EXIT)

/*
 * A range of guest-physical memory, for KVM_WTRACK_PROTECT and
 * KVM_WTRACK_UNPROTECT on the VM fd.  Written by userspace only.
 */
struct kvm_wtrack_range {
	__u64 gpa;		/* page aligned */
	__u64 size;		/* bytes: a non-zero multiple of the page size */
	__u64 flags;		/* none defined yet: must be 0 */
	__u64 reserved[5];	/* must be 0 */
};

#define KVM_WTRACK_PROTECT	_IOW(KVMIO, 0xf0, struct kvm_wtrack_range)
#define KVM_WTRACK_UNPROTECT	_IOW(KVMIO, 0xf1, struct kvm_wtrack_range)

/*
 * kvm_run.memory_fault.flags bits of a KVM_EXIT_MEMORY_FAULT that reports a
 * write to a protected page.  Bits 0-4 are upstream's (PRIVATE is bit 3,
 * bit 4 is claimed), so ours start at 32.
 */
#define KVM_MEMORY_EXIT_FLAG_WRITE_TRACK	(1ULL << 32)
#define KVM_MEMORY_EXIT_FLAG_WTRACK_WRITE	(1ULL << 33)
/*
 * Set as well when the write could not be stopped and has already landed:
 * a write KVM made on its own (kvmclock, steal time, vmcb12, a task
 * switch...).  gpa and size name the page; nothing is retried.  With
 * OVERFLOW too, more pages were written than KVM could queue (gpa and size
 * are 0).  See Documentation/wtrack.rst for the writers.
 */
#define KVM_MEMORY_EXIT_FLAG_WTRACK_LANDED	(1ULL << 34)
#define KVM_MEMORY_EXIT_FLAG_WTRACK_OVERFLOW	(1ULL << 35)

#endif /* _UAPI_LINUX_KVM_WTRACK_H */
