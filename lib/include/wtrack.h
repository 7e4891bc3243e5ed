/* SPDX-License-Identifier: MIT */
/*
 * libwtrack: consume kvm-wtrack's write reports in a VMM.
 *
 * Ring mode: guest writes to protected pages arrive as events in a ring
 * that KVM shares read-only with the consumer; the writing vCPUs wait in
 * the kernel until the consumer resolves their pages.  The library reads
 * the ring, batches the resolves and hands them back to KVM with io_uring
 * commands on the ring fd (an io_uring of its own, with 128-byte SQEs).
 * Exit mode: KVM_RUN itself reports the write; wtrack_exit_event() turns
 * that exit into the same event type, so one handler serves both modes.
 *
 * An event with KVM_WTRACK_EVENT_LANDED in its flags reports a write KVM
 * made on its own (kvmclock, steal time...): it has landed, KVM has ended
 * the page's protection and nobody waits for it, so it is not resolved.
 * Every other event is a stopped write, whose vCPU waits (ring mode) or
 * retries it (exit mode) once the page is resolved.
 *
 * Every function returns 0 or a count on success and a negative errno on
 * failure; none of them sets errno as part of its interface.  A struct
 * wtrack is used by one thread at a time, best always the same: the
 * kernel completes a sleeping FETCH in the thread that submitted it, and
 * cancels it (ECANCELED, returned once by wtrack_wait()) if that thread
 * exits.  The exceptions touch no state of the handle and may be called
 * from any thread at any time: wtrack_protect(), wtrack_unprotect(),
 * wtrack_exit_event() and, in exit mode, wtrack_resolve() (so every vCPU
 * thread can resolve its own exits).
 */
#ifndef WTRACK_H
#define WTRACK_H

#include <stdint.h>
#include <linux/kvm_wtrack.h>

#ifdef __cplusplus
extern "C" {
#endif

struct kvm_run;
struct wtrack;

/* struct wtrack_params.mode */
#define WTRACK_MODE_RING	0	/* events in a ring, vCPUs wait in KVM */
#define WTRACK_MODE_EXIT	1	/* KVM_RUN exits with the report */

/* struct wtrack_params.flags */
#define WTRACK_F_SQPOLL		(1U << 0)	/* commands need no syscall */
#define WTRACK_F_BUSY_POLL	(1U << 1)	/* wtrack_wait() spins first */

#define WTRACK_DEFAULT_ENTRIES	4096
#define WTRACK_DEFAULT_BUSY_POLL_US	50

/**
 * struct wtrack_params - how wtrack_open() sets up tracking
 * @mode: WTRACK_MODE_RING or WTRACK_MODE_EXIT.
 * @ring_entries: ring size in events, a power of two from
 *	KVM_WTRACK_RING_MIN_ENTRIES to KVM_WTRACK_RING_MAX_ENTRIES;
 *	0 for WTRACK_DEFAULT_ENTRIES.  Ring mode only.
 * @flags: WTRACK_F_* flags.  Ring mode only.
 * @busy_poll_us: with WTRACK_F_BUSY_POLL, how long wtrack_wait() spins on
 *	the ring before it sleeps; 0 for WTRACK_DEFAULT_BUSY_POLL_US.
 * @resv: must be zero.
 *
 * A zeroed structure (or a NULL pointer) asks for the ring mode with the
 * defaults.
 */
struct wtrack_params {
	unsigned int mode;
	unsigned int ring_entries;
	unsigned int flags;
	unsigned int busy_poll_us;
	unsigned int resv[4];
};

/**
 * struct wtrack_stats - counters of a ring
 * @events: events the kernel posted.
 * @coalesced: writes that joined an event not yet resolved.
 * @space_waits: times a vCPU waited for a free ring entry.
 * @resolved: pages resolved while a vCPU waited for them.
 * @fetches: FETCH and COMMIT_AND_FETCH commands the library submitted.
 * @commits: COMMIT commands the library submitted.
 * @resolves: ranges the library handed to the kernel to resolve.
 * @sleeps: times wtrack_wait() slept in the kernel.
 * @polled: resolves a vCPU saw while polling (kvm.wtrack_poll_ns).
 *
 * @events, @coalesced, @space_waits, @resolved and @polled are the
 * kernel's, from the ring header, since the ring was created; the others
 * are the library's.
 */
struct wtrack_stats {
	uint64_t events;
	uint64_t coalesced;
	uint64_t space_waits;
	uint64_t resolved;
	uint64_t fetches;
	uint64_t commits;
	uint64_t resolves;
	uint64_t sleeps;
	uint64_t polled;
};

/**
 * wtrack_open() - turn on write tracking for a VM
 * @vm_fd: the VM's file descriptor (KVM_CREATE_VM).
 * @p: the mode and its options; NULL for the ring mode with defaults.
 * @wtp: where the new handle is stored on success.
 *
 * Checks KVM_CAP_X86_WRITE_TRACK and enables it in the requested mode.  In
 * ring mode, also attaches a ring (KVM_WTRACK_RING_FD), maps it and sets
 * up an io_uring for its commands.  Tracking is enabled once in a VM's
 * life: in ring mode, a VM whose tracking is on gets a new ring once the
 * previous one is gone, with the size it was enabled with.
 *
 * Return: 0 on success; -EOPNOTSUPP if the kernel cannot track the VM in
 * that mode; -EINVAL for bad parameters; -EEXIST if tracking is already
 * enabled in exit mode, or in the other mode; -EBUSY if the VM's previous
 * ring is still there, or its release is still unprotecting the pages
 * (try again shortly); -EIO if the ring's layout is not one this header
 * describes; another negative errno from KVM, mmap() or io_uring.
 */
int wtrack_open(int vm_fd, const struct wtrack_params *p, struct wtrack **wtp);

/**
 * wtrack_close() - release a handle
 * @wt: the handle, or NULL.
 *
 * Waits for a COMMIT in flight, then tears down the io_uring, the mapping
 * and the ring fd.  Once the kernel has dropped its last reference to the
 * ring, which happens shortly after, every page is unprotected and every
 * waiting vCPU goes on.  In exit mode, tracking stays on until the VM is
 * destroyed.  The VM fd is not closed.
 */
void wtrack_close(struct wtrack *wt);

/**
 * wtrack_protect() - write-protect guest-physical memory
 * @wt: the handle.
 * @gpa: start of the range, page aligned.
 * @size: length in bytes, a non-zero multiple of the page size.
 *
 * KVM_WTRACK_PROTECT: the next guest write to each page of the range is
 * reported.
 *
 * Return: 0 on success, or the negative errno of the ioctl.
 */
int wtrack_protect(struct wtrack *wt, uint64_t gpa, uint64_t size);

/**
 * wtrack_unprotect() - remove write protection
 * @wt: the handle.
 * @gpa: start of the range, page aligned.
 * @size: length in bytes, a non-zero multiple of the page size.
 *
 * KVM_WTRACK_UNPROTECT.  In ring mode this also resolves the pages now,
 * with one ioctl per call; wtrack_resolve() batches resolves instead.
 *
 * Return: 0 on success, or the negative errno of the ioctl.
 */
int wtrack_unprotect(struct wtrack *wt, uint64_t gpa, uint64_t size);

/**
 * wtrack_wait() - wait for events and take them from the ring
 * @wt: a ring mode handle.
 * @ev: where the events are copied.
 * @max: room in @ev, in events; at least 1.
 *
 * First hands the kernel what is pending: the resolves queued by
 * wtrack_resolve() and how far the ring has been consumed.  Then, if the
 * ring is empty, sleeps until an event arrives (with WTRACK_F_BUSY_POLL,
 * spins on the ring for a while first).  The events are consumed: the
 * next call returns the ones after them.  Resolve each one's page
 * (wtrack_resolve()) unless it carries KVM_WTRACK_EVENT_LANDED.
 *
 * Return: the number of events copied, at least 1; -EINTR if a signal
 * interrupted the sleep (call again: nothing is lost); -EOPNOTSUPP in exit
 * mode; -EIO if the ring's indices are inconsistent; or the negative
 * errno of a command that failed (its resolves were dropped).
 */
int wtrack_wait(struct wtrack *wt, struct kvm_wtrack_event *ev, unsigned int max);

/**
 * wtrack_peek() - take the events already in the ring, without waiting
 * @wt: a ring mode handle.
 * @ev: where the events are copied.
 * @max: room in @ev, in events.
 *
 * Reads the ring only: no system call.  The kernel learns how far the ring
 * was consumed with the next wtrack_wait() or wtrack_commit().
 *
 * Return: the number of events copied, possibly 0; -EOPNOTSUPP in exit
 * mode; -EIO if the ring's indices are inconsistent.
 */
int wtrack_peek(struct wtrack *wt, struct kvm_wtrack_event *ev, unsigned int max);

/**
 * wtrack_resolve() - let the vCPUs waiting for some pages go on
 * @wt: the handle.
 * @gpa: a guest-physical address.
 * @size: a length in bytes, not 0.
 *
 * Resolves (unprotects) every page that [@gpa, @gpa + @size) touches, so
 * a stopped write's gpa and size can be passed as they are; a landed
 * write's page is unprotected already, and resolving it would undo a
 * protection set since.  In ring mode the
 * range is queued, merged with the previous one when adjacent, and handed
 * to the kernel by the next wtrack_wait() or wtrack_commit(), or by
 * wtrack_resolve() itself when KVM_WTRACK_RESOLVE_MAX ranges are already
 * queued.  In exit mode it is KVM_WTRACK_UNPROTECT of those pages, now.
 *
 * Return: 0 on success; -EINVAL if the range is empty or wraps around; in
 * ring mode -EINTR if a signal interrupted waiting for the previous batch
 * (the range is not queued; call again); another negative errno from
 * submitting the batch or from the ioctl.
 */
int wtrack_resolve(struct wtrack *wt, uint64_t gpa, uint64_t size);

/**
 * wtrack_commit() - hand the queued resolves to the kernel now
 * @wt: the handle.
 *
 * Submits the queued resolves and the consumed head in one COMMIT and
 * waits for every COMMIT in flight to complete.  Needed by consumers that
 * use wtrack_peek() (e.g. after poll() on wtrack_ring_fd()); wtrack_wait()
 * does it by itself.
 *
 * Return: 0 on success (also when there was nothing to hand over, and in
 * exit mode); -EINTR if a signal interrupted the wait (the commands go on;
 * call again to wait for them); or the negative errno of a command that
 * failed (its resolves were dropped).
 */
int wtrack_commit(struct wtrack *wt);

/**
 * wtrack_stats() - read the ring's counters
 * @wt: a ring mode handle.
 * @st: filled with the kernel's and the library's counters.
 *
 * Return: 0 on success, -EOPNOTSUPP in exit mode.
 */
int wtrack_stats(struct wtrack *wt, struct wtrack_stats *st);

/**
 * wtrack_ring_fd() - the ring's file descriptor
 * @wt: a ring mode handle.
 *
 * For poll() or epoll: readable when the ring holds events past the head
 * last handed to the kernel, so follow wtrack_peek() with wtrack_commit().
 * Do not read() it: that consumes events behind the library's back.  The
 * descriptor belongs to @wt; wtrack_close() closes it.
 *
 * Return: the file descriptor, or -EOPNOTSUPP in exit mode.
 */
int wtrack_ring_fd(struct wtrack *wt);

/**
 * wtrack_exit_event() - decode a write-tracking exit of KVM_RUN
 * @run: the vCPU's mapped struct kvm_run, after KVM_RUN failed with EFAULT
 *	or returned with exit reason KVM_EXIT_WTRACK_LANDED.
 * @vcpu_id: the vCPU's id, copied into the event.
 * @ev: filled with the report if there is one.
 *
 * Exit mode has two reports.  A stopped write: KVM_RUN fails with EFAULT,
 * exit reason KVM_EXIT_MEMORY_FAULT with KVM_MEMORY_EXIT_FLAG_WRITE_TRACK
 * in memory_fault.flags; @ev gets its gpa and size (the rest of the page
 * from the first protected byte) and flags 0.  A landed write: KVM_RUN
 * returns 0 with exit reason KVM_EXIT_WTRACK_LANDED; @ev gets
 * kvm_run.wtrack_landed's gpa, size and flags (KVM_WTRACK_EVENT_LANDED).
 * The event's seq is 0: exits are not numbered.  Works with a
 * <linux/kvm.h> that lacks memory_fault or wtrack_landed.
 *
 * Return: 1 if the exit is a write-tracking report (@ev filled), 0 if it
 * is something else, -EINVAL if @run or @ev is NULL.
 */
int wtrack_exit_event(const struct kvm_run *run, unsigned int vcpu_id,
		      struct kvm_wtrack_event *ev);

#ifdef __cplusplus
}
#endif

#endif /* WTRACK_H */
