/* SPDX-License-Identifier: GPL-2.0 */
/*
 * An emulated kvm-wtrack kernel for the library's host tests: the ring,
 * protected pages, vCPU threads that report writes and wait, and the
 * FETCH / COMMIT commands, following the rules of <linux/kvm_wtrack.h>.
 */
#ifndef WTRACK_EMU_H
#define WTRACK_EMU_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include "../internal.h"

#define EMU_BASE_GPA	0x100000ULL
#define EMU_PAGE	4096ULL
#define EMU_PENDING	INT_MIN	/* a FETCH left waiting: no completion yet */

struct emu {
	pthread_mutex_t lock;
	pthread_cond_t vcpu_cond;	/* a page resolved or the head moved */
	pthread_cond_t cq_cond;		/* a completion posted */

	struct kvm_wtrack_ring_header *hdr;	/* the kernel's writable view */
	char *events;			/* event i at events + i * event_size */
	uint32_t event_size;
	const void *ro_map;		/* the consumer's read-only view */
	size_t map_len;
	uint32_t size;
	uint32_t khead;			/* the last head a command recorded */
	uint64_t seq;

	uint64_t npages;
	uint8_t *prot;			/* write-protected */
	uint8_t *pending;		/* has an unresolved event */

	bool fetch_waiting;
	uint32_t fetch_head;
	uint64_t fetch_tag;
	struct kvm_wtrack_resolve *fetch_res;	/* the resolves it came with */
	struct kvm_wtrack_resolve *fetch_copy;	/* and what they were */
	uint32_t fetch_nr;

	struct wt_cqe cq[16];
	unsigned int cq_head, cq_tail;

	/* Deferred issue, as with SQPOLL: commands run at the next reap. */
	bool deferred;
	struct { unsigned int op; struct kvm_wtrack_ring_cmd cmd; uint64_t tag; } sq[4];
	unsigned int sq_n;

	int timeout_ms;
	int fail_next;			/* the next command fails with this */
	bool intr_next;			/* the next sleeping reap gets -EINTR */
	/* Completing out of order: the next COMMIT's after the next other. */
	bool hold_commit, held;
	struct wt_cqe held_cqe;

	/* What the tests look at. */
	unsigned int submits, bad_cmds, busy_fetches, buf_changed;
	unsigned int max_nr_resolve, resolve_ranges;
	uint64_t unprotected_pages;
};

extern const struct wt_transport emu_transport;

struct emu *emu_create(uint32_t size, uint32_t start, uint32_t events_offset,
		       uint64_t npages);
/*
 * The same with events @event_size bytes apart, as a later kernel may lay
 * them out: the bytes past struct kvm_wtrack_event are filled with junk.
 */
struct emu *emu_create_layout(uint32_t size, uint32_t start, uint32_t events_offset,
			      uint32_t event_size, uint64_t npages);
void emu_destroy(struct emu *e);
void emu_protect(struct emu *e, uint64_t first, uint64_t n);
bool emu_protected(struct emu *e, uint64_t page);
/* A vCPU's write: reported and waited on as KVM does; 0 once it landed. */
int emu_write(struct emu *e, unsigned int vcpu, uint64_t gpa);
/*
 * A write KVM made itself: reported after the fact, with the end of the
 * page's protection (vCPUs waiting on the page go on); nothing waits.
 */
int emu_write_landed(struct emu *e, unsigned int vcpu, uint64_t gpa);
/*
 * Run one command now, outside the transport: its result, and no
 * completion.  For the kernel's own checks; not for FETCH.
 */
int emu_cmd(struct emu *e, unsigned int op, const struct kvm_wtrack_ring_cmd *cmd,
	    uint64_t tag);
/* Wait until @cond(e) holds; false after the timeout. */
bool emu_wait_for(struct emu *e, bool (*cond)(struct emu *e));

#endif
