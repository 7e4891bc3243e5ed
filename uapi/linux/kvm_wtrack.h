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
 * so kvm-wtrack's capabilities start at 1024; exit reasons 0..39 exist in
 * 6.12 and later kernels continue from 40, so ours start at 1024.  The
 * VMware features (<linux/kvm_vmware.h>) use capabilities from 1040 and
 * exit reasons from 1024 to 1031; write tracking's exits start at 1032.
 *
 * Every structure that userspace passes in has a flags field and reserved
 * space that must be zero, and KVM checks them, so that later versions can
 * give them a meaning.  Structures KVM writes have reserved space that KVM
 * zeroes.
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
 * args[0] holds the flags below, args[2] and args[3] must be zero.
 *
 * 1024 was the number of the first, pre-release version of this ABI; a
 * kernel that answers for 1024 has that one, which this header does not
 * describe.
 */
#define KVM_CAP_X86_WRITE_TRACK		1025

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
 * A stopped write: KVM_RUN fails with EFAULT, exit_reason is
 * KVM_EXIT_MEMORY_FAULT and kvm_run.memory_fault.flags has this bit (bits
 * 0-4 are upstream's, so ours start at 32).  memory_fault.gpa is the
 * guest-physical address of the first protected byte the write touches and
 * memory_fault.size the bytes from there to the end of its page, always.
 */
#define KVM_MEMORY_EXIT_FLAG_WRITE_TRACK	(1ULL << 32)

/*
 * A write KVM made on its own (kvmclock, steal time, vmcb12...) that landed
 * on a protected page before anyone could be told: KVM_RUN returns 0 with
 * this exit reason and kvm_run.wtrack_landed filled in.  It is not a fault:
 * nothing is retried, and KVM has ended the page's protection, since the
 * contents it guarded are gone.  Every such write is reported, once; a
 * guest write stopped on a page whose landed write is not reported yet
 * reports that instead.  KVM_RUN with immediate_exit reports them too.
 */
#define KVM_EXIT_WTRACK_LANDED		1032

/* kvm_run.wtrack_landed. */
struct kvm_wtrack_landed_exit {
	__u64 flags;		/* KVM_WTRACK_EVENT_* */
	__u64 gpa;		/* the page, page aligned */
	__u64 size;		/* the page size */
	__u64 reserved[4];	/* 0 */
};

/* Set in kvm_wtrack_event.flags and kvm_wtrack_landed_exit.flags. */
#define KVM_WTRACK_EVENT_LANDED		(1ULL << 0)

/*
 * Ring mode: KVM_WTRACK_RING_FD on the VM fd, whose argument must be 0,
 * returns a new file descriptor for the ring (O_RDWR | O_CLOEXEC); there
 * is at most one at a time.  When its last reference goes (the fd closed,
 * the ring unmapped, no io_uring command in flight), every page is
 * unprotected and every waiting vCPU goes on; until that is done a new
 * KVM_WTRACK_RING_FD fails with EBUSY.
 *
 * mmap() of the ring fd, read-only, from offset 0: the header, then the
 * events array at header.events_offset, header.event_size bytes apart.
 * The kernel writes every field; userspace only reads.  A new event is
 * written before tail is advanced with a store-release, so a consumer
 * reads tail with a load-acquire and may then read every event in
 * [its head, tail).  Indices are free running: event i sits in
 * events[i & (size - 1)].
 *
 * The consumer tells the kernel how far it has consumed by the head of
 * its commands (io_uring or read()); an entry is reused only after that.
 */
struct kvm_wtrack_ring_header {
	__u32 tail;		/* next event the kernel writes: store-release */
	__u32 head;		/* the consumer's last committed head */
	__u32 size;		/* entries, a power of two */
	__u32 events_offset;	/* of the events array in the mapping */
	__u32 event_size;	/* bytes per event: sizeof(struct kvm_wtrack_event) */
	__u32 pad;
	__u64 features;		/* none defined yet: 0 */
	/* Counters since the ring fd was created. */
	__u64 events;		/* events posted */
	__u64 coalesced;	/* writes that joined an unresolved event */
	__u64 space_waits;	/* times a vCPU waited for a free entry */
	__u64 resolved;		/* pages resolved with a vCPU event pending */
	__u64 polled;		/* resolves a vCPU saw while polling */
};

/*
 * One report: a stopped write (flags 0), with gpa and size as in
 * kvm_run.memory_fault, or a landed write (KVM_WTRACK_EVENT_LANDED), with
 * gpa and size as in kvm_run.wtrack_landed.
 */
struct kvm_wtrack_event {
	__u64 gpa;
	__u32 size;
	__u32 vcpu_id;
	__u64 flags;		/* KVM_WTRACK_EVENT_* */
	__u64 seq;		/* 0, 1, 2... since the ring fd was created */
	__u64 reserved[4];	/* 0 */
};

#define KVM_WTRACK_RING_FD	_IO(KVMIO, 0xf2)

/*
 * io_uring commands on the ring fd (IORING_OP_URING_CMD, sqe->cmd_op), with
 * struct kvm_wtrack_ring_cmd in sqe->cmd.  The io_uring must be set up with
 * IORING_SETUP_SQE128: the command does not fit in a 64-byte SQE.
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
 * after io_uring_submit() returns: keep it until the completion.  Every
 * command is checked whole before it acts: a failing command changes
 * nothing, and res is -errno.
 */
struct kvm_wtrack_ring_cmd {
	__u32 head;
	__u32 flags;		/* none defined yet: must be 0 */
	__u32 nr_resolve;	/* at most KVM_WTRACK_RESOLVE_MAX */
	__u32 reserved0;	/* must be 0 */
	__u64 resolve_addr;	/* struct kvm_wtrack_resolve[nr_resolve] */
	__u64 reserved[3];	/* must be 0 */
};

/* A range to resolve: as for KVM_WTRACK_UNPROTECT. */
struct kvm_wtrack_resolve {
	__u64 gpa;
	__u64 size;
	__u64 flags;		/* none defined yet: must be 0 */
	__u64 reserved;		/* must be 0 */
};

#define KVM_WTRACK_RESOLVE_MAX	1024

#define KVM_WTRACK_RING_FETCH		_IOW(KVMIO, 0xf3, struct kvm_wtrack_ring_cmd)
#define KVM_WTRACK_RING_COMMIT		_IOW(KVMIO, 0xf4, struct kvm_wtrack_ring_cmd)
#define KVM_WTRACK_RING_COMMIT_AND_FETCH \
	_IOW(KVMIO, 0xf5, struct kvm_wtrack_ring_cmd)

#endif /* _UAPI_LINUX_KVM_WTRACK_H */
