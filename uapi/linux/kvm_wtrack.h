/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * kvm-wtrack: synchronous notification of guest writes to guest-physical
 * pages that userspace write-protected.
 *
 * This header is the single definition of the kvm-wtrack ABI.  The kernel
 * includes it from <linux/kvm.h>; userspace includes it directly.  See
 * Documentation/wtrack-api.rst.
 *
 * It also holds the VMware backdoor features that go with it (hypercalls
 * forwarded to userspace, L0 handling of L2's backdoor; see
 * Documentation/vmware.rst), so that every number is allocated here.
 *
 * Numbers are chosen away from upstream KVM's: capabilities 0..238 exist in
 * Linux 6.12 and later kernels have assigned or claimed up to the high 240s,
 * so kvm-wtrack's capabilities start at 1024 (write tracking) and 1040
 * (VMware); exit reasons 0..39 exist in 6.12 and later kernels continue
 * from 40, so ours start at 1024.
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

/*
 * Report it as an event in a ring shared with a consumer instead, and keep
 * the vCPU waiting in the kernel until the consumer resolves the page.
 * args[1] holds the number of ring entries: a power of two from
 * KVM_WTRACK_RING_MIN_ENTRIES to KVM_WTRACK_RING_MAX_ENTRIES.  Exactly one
 * of ENABLE_EXIT and ENABLE_RING is set.
 */
#define KVM_WTRACK_ENABLE_RING		(1ULL << 1)

#define KVM_WTRACK_ENABLE_VALID_MASK	(KVM_WTRACK_ENABLE_EXIT | \
					 KVM_WTRACK_ENABLE_RING)

#define KVM_WTRACK_RING_MIN_ENTRIES	16
#define KVM_WTRACK_RING_MAX_ENTRIES	65536

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
 * Ring mode: KVM_WTRACK_RING_FD on the VM fd returns a new file descriptor
 * for the ring (O_RDWR | O_CLOEXEC); there is at most one at a time.  When
 * its last reference goes (the fd closed, the ring unmapped, no io_uring
 * command in flight), every page is unprotected and every waiting vCPU
 * goes on.
 *
 * mmap() of the ring fd, read-only, from offset 0: the header, then the
 * events array at header.events_offset.  The kernel writes every field;
 * userspace only reads.  A new event is written before tail is advanced
 * with a store-release, so a consumer reads tail with a load-acquire and
 * may then read every event in [its head, tail).  Indices are free
 * running: event i sits in events[i & (size - 1)].
 *
 * The consumer tells the kernel how far it has consumed by the head of
 * its commands (io_uring or read()); an entry is reused only after that.
 */
struct kvm_wtrack_ring_header {
	__u32 tail;		/* next event the kernel writes: store-release */
	__u32 head;		/* the consumer's last committed head */
	__u32 size;		/* entries, a power of two */
	__u32 events_offset;	/* of the events array in the mapping */
	/* Counters since the ring fd was created. */
	__u64 events;		/* events posted */
	__u64 coalesced;	/* writes that joined an unresolved event */
	__u64 space_waits;	/* times a vCPU waited for a free entry */
	__u64 resolved;		/* pages resolved with a vCPU event pending */
	__u64 polled;		/* resolves a vCPU saw while polling */
};

/* One write to a protected page, in the style of kvm_run.memory_fault. */
struct kvm_wtrack_event {
	__u64 gpa;
	__u32 size;
	__u32 vcpu_id;
	__u64 flags;		/* KVM_MEMORY_EXIT_FLAG_* below */
	__u64 seq;		/* 0, 1, 2... since the ring fd was created */
};

#define KVM_WTRACK_RING_FD	_IO(KVMIO, 0xf2)

/*
 * io_uring commands on the ring fd (IORING_OP_URING_CMD, sqe->cmd_op), with
 * struct kvm_wtrack_ring_cmd in sqe->cmd:
 *
 * FETCH: complete once events past @head exist; res is their number
 *   past the kernel's head when it completes (0 if read() took them).
 * COMMIT: resolve the @nr_resolve ranges at @resolve_addr: unprotect them
 *   and wake every vCPU waiting on one of their pages; pages without a
 *   memslot are skipped.  res is 0.
 * COMMIT_AND_FETCH: both, in that order.
 *
 * Each also records @head: the consumer is done with events before it.
 * It must lie between header.head and tail.  At most one FETCH is in
 * flight per ring; it completes through task work of the thread that
 * submitted it, and is canceled (-ECANCELED) if that thread exits.  The
 * resolve array is read when the command is issued, which with SQPOLL is
 * after io_uring_submit() returns: keep it until the completion.  A
 * failing command changes nothing; res is -errno.
 */
struct kvm_wtrack_ring_cmd {
	__u32 head;
	__u32 nr_resolve;	/* at most KVM_WTRACK_RESOLVE_MAX */
	__u64 resolve_addr;	/* struct kvm_wtrack_resolve[nr_resolve] */
};

/* A range to resolve: as for KVM_WTRACK_UNPROTECT. */
struct kvm_wtrack_resolve {
	__u64 gpa;
	__u64 size;
};

#define KVM_WTRACK_RESOLVE_MAX	1024

#define KVM_WTRACK_RING_FETCH		_IOW(KVMIO, 0xf3, struct kvm_wtrack_ring_cmd)
#define KVM_WTRACK_RING_COMMIT		_IOW(KVMIO, 0xf4, struct kvm_wtrack_ring_cmd)
#define KVM_WTRACK_RING_COMMIT_AND_FETCH \
	_IOW(KVMIO, 0xf5, struct kvm_wtrack_ring_cmd)

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

/*
 * VMware backdoor hypercalls: KVM_ENABLE_CAP(KVM_CAP_X86_VMWARE_HYPERCALL)
 * on the VM fd with args[0] = 1 makes VMCALL/VMMCALL with EAX =
 * KVM_VMWARE_MAGIC exit to userspace with KVM_EXIT_VMWARE; args[0] = 0
 * turns it off again.  Other hypercalls are unaffected.
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

#endif /* _UAPI_LINUX_KVM_WTRACK_H */
