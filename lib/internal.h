/* SPDX-License-Identifier: MIT */
/*
 * libwtrack internals.  ring.c is the consumer protocol and touches only
 * memory; it talks to the kernel through struct wt_transport, which
 * uring.c implements with io_uring and the host tests with an emulated
 * kernel.
 */
#ifndef WTRACK_INTERNAL_H
#define WTRACK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include "wtrack.h"

#define WT_API		__attribute__((visibility("default")))
#ifndef ARRAY_SIZE
#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#endif
#define WT_PAGE_SIZE	4096ULL		/* KVM's tracking granule on x86 */

/* The tags of the commands in flight: at most one of each. */
enum wt_kind { WT_FETCH, WT_COMMIT, WT_NR_KINDS };

struct wt_cqe {
	uint64_t tag;
	int res;
};

struct wt_transport {
	/* Hand one command to the kernel; its completion carries @tag. */
	int (*submit)(void *priv, unsigned int op,
		      const struct kvm_wtrack_ring_cmd *cmd, uint64_t tag);
	/* One completion: 1 and @cqe, 0 if none and !@wait, or -errno. */
	int (*reap)(void *priv, struct wt_cqe *cqe, bool wait);
	/* Tear down; commands still in flight are cancelled. */
	void (*release)(void *priv);
};

/* Resolve buffers: one filling, one per command in flight. */
#define WT_NR_BUFS	(WT_NR_KINDS + 1)

struct wtrack {
	unsigned int mode;
	unsigned int flags;
	int vm_fd;
	int ring_fd;		/* -1 when not ours to close */
	void *map;		/* NULL when not ours to unmap */
	size_t map_len;

	const struct kvm_wtrack_ring_header *hdr;
	const char *events;	/* event i at events + i * event_size */
	uint32_t event_size;	/* header.event_size: sizeof(event) or more */
	uint32_t mask;
	uint32_t head;		/* next event to copy out */
	uint32_t sent_head;	/* head of the last command submitted */

	struct kvm_wtrack_resolve *buf[WT_NR_BUFS];
	unsigned int queue;	/* buf[] being filled */
	unsigned int nr;	/* ranges in it */
	bool inflight[WT_NR_KINDS];
	int inflight_buf[WT_NR_KINDS];	/* -1: none */
	int error;		/* a failed command's, not yet returned */
	uint64_t busy_poll_ns;

	const struct wt_transport *tp;
	void *tp_priv;
	struct wtrack_stats st;	/* the library's counters */
};

/* ring.c */
int wt_check_params(const struct wtrack_params *in, struct wtrack_params *out);
int wt_ring_open(const struct wtrack_params *p, const void *map,
		 const struct wt_transport *tp, void *priv, struct wtrack **wtp);
void wt_ring_close(struct wtrack *wt);

/* uring.c */
int wt_uring_create(int ring_fd, unsigned int flags, void **privp);
void wt_uring_destroy(void *priv);
extern const struct wt_transport wt_uring_transport;

#endif /* WTRACK_INTERNAL_H */
