// SPDX-License-Identifier: MIT
/*
 * The ring consumer: copies events out of the mapped ring, batches the
 * resolves and keeps the kernel's idea of our head up to date.  At most
 * one FETCH (or COMMIT_AND_FETCH) and one COMMIT are in flight; each
 * holds the resolve buffer it was given until its completion, since the
 * kernel may read the buffer until then (with SQPOLL it reads it later
 * than our submit).  Memory only: commands go through wt->tp.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "internal.h"

#define MIN(a, b)	((a) < (b) ? (a) : (b))

int wt_check_params(const struct wtrack_params *in, struct wtrack_params *out)
{
	static const struct wtrack_params defaults;
	const struct wtrack_params *p = in ? in : &defaults;
	unsigned int n = p->ring_entries;

	for (unsigned int i = 0; i < ARRAY_SIZE(p->resv); i++)
		if (p->resv[i])
			return -EINVAL;
	*out = *p;
	if (p->mode == WTRACK_MODE_EXIT)
		return p->ring_entries || p->flags || p->busy_poll_us ? -EINVAL : 0;
	if (p->mode != WTRACK_MODE_RING)
		return -EINVAL;
	if (p->flags & ~(WTRACK_F_SQPOLL | WTRACK_F_BUSY_POLL))
		return -EINVAL;
	if (!n)
		out->ring_entries = WTRACK_DEFAULT_ENTRIES;
	else if (n & (n - 1) || n < KVM_WTRACK_RING_MIN_ENTRIES ||
		 n > KVM_WTRACK_RING_MAX_ENTRIES)
		return -EINVAL;
	if (!p->busy_poll_us)
		out->busy_poll_us = WTRACK_DEFAULT_BUSY_POLL_US;
	return 0;
}

/* Pairs with the kernel's store-release: the events before tail are written. */
static uint32_t load_tail(const struct wtrack *wt)
{
	return __atomic_load_n(&wt->hdr->tail, __ATOMIC_ACQUIRE);
}

/* Events past our head; -EIO if tail is where no kernel would put it. */
static int ring_avail(const struct wtrack *wt)
{
	uint32_t n = load_tail(wt) - wt->head;

	return n > wt->mask + 1 ? -EIO : (int)n;
}

/*
 * Copy @n events from our head.  Events lie header.event_size bytes apart:
 * a longer event of a later kernel starts with the part we know.
 */
static int ring_copy(struct wtrack *wt, struct kvm_wtrack_event *ev, unsigned int n)
{
	uint32_t i = wt->head & wt->mask;
	unsigned int first = MIN(n, wt->mask + 1 - i);

	if (wt->event_size == sizeof(*ev)) {
		memcpy(ev, wt->events + (size_t)i * sizeof(*ev), first * sizeof(*ev));
		memcpy(ev + first, wt->events, (n - first) * sizeof(*ev));
	} else {
		for (unsigned int k = 0; k < n; k++)
			memcpy(&ev[k], wt->events +
			       (size_t)((wt->head + k) & wt->mask) * wt->event_size,
			       sizeof(*ev));
	}
	wt->head += n;
	return n;
}

static int take_error(struct wtrack *wt)
{
	int err = wt->error;

	wt->error = 0;
	return err;
}

static void complete(struct wtrack *wt, const struct wt_cqe *c)
{
	int err = c->res < 0 ? c->res : 0;

	if (c->tag >= WT_NR_KINDS || !wt->inflight[c->tag]) {
		err = -EIO;	/* not ours: a kernel or library bug */
	} else {
		wt->inflight[c->tag] = false;
		wt->inflight_buf[c->tag] = -1;
	}
	if (!err)
		return;
	/* A failed command changed nothing: the kernel's head is older. */
	wt->sent_head = __atomic_load_n(&wt->hdr->head, __ATOMIC_RELAXED);
	if (!wt->error)
		wt->error = err;
}

/* Take one completion, if there is one or @wait; 1 if there was one. */
static int reap(struct wtrack *wt, bool wait)
{
	struct wt_cqe c;
	int ret = wt->tp->reap(wt->tp_priv, &c, wait);

	if (ret > 0)
		complete(wt, &c);
	return ret;
}

static int reap_ready(struct wtrack *wt)
{
	int ret;

	while ((ret = reap(wt, false)) > 0)
		;
	return ret;
}

static int wait_idle(struct wtrack *wt, enum wt_kind kind)
{
	while (wt->inflight[kind]) {
		int ret = reap(wt, true);

		if (ret < 0)
			return ret;
	}
	return 0;
}

static unsigned int free_buf(const struct wtrack *wt)
{
	unsigned int i;

	for (i = 0; i < WT_NR_BUFS - 1; i++)
		if ((int)i != wt->inflight_buf[WT_FETCH] &&
		    (int)i != wt->inflight_buf[WT_COMMIT] && i != wt->queue)
			break;
	return i;
}

/* Send the queued resolves and our head; @kind must not be in flight. */
static int submit(struct wtrack *wt, enum wt_kind kind)
{
	struct kvm_wtrack_ring_cmd cmd = { .head = wt->head, .nr_resolve = wt->nr };
	unsigned int op = KVM_WTRACK_RING_COMMIT;
	int ret;

	/*
	 * Flags and reserved fields stay 0, and an address goes only with
	 * ranges: the kernel fails anything else with EINVAL.
	 */
	if (wt->nr)
		cmd.resolve_addr = (uintptr_t)wt->buf[wt->queue];
	if (kind == WT_FETCH)
		op = wt->nr ? KVM_WTRACK_RING_COMMIT_AND_FETCH : KVM_WTRACK_RING_FETCH;
	ret = wt->tp->submit(wt->tp_priv, op, &cmd, kind);
	if (ret < 0)
		return ret;
	wt->inflight[kind] = true;
	wt->sent_head = wt->head;
	if (kind == WT_FETCH)
		wt->st.fetches++;
	else
		wt->st.commits++;
	if (wt->nr) {
		wt->inflight_buf[kind] = wt->queue;
		wt->queue = free_buf(wt);
		wt->st.resolves += wt->nr;
		wt->nr = 0;
	}
	return 0;
}

static int send_commit(struct wtrack *wt)
{
	int ret = wait_idle(wt, WT_COMMIT);

	return ret < 0 ? ret : submit(wt, WT_COMMIT);
}

enum flush_how {
	FLUSH_LAZY,	/* events to return: head only if half the ring waits on it */
	FLUSH_EAGER,	/* about to poll the ring: the kernel needs our head */
	FLUSH_FETCH,	/* about to sleep: the same, and a FETCH in flight */
};

/* Hand the kernel the queued resolves, and our head as @how says. */
static int flush(struct wtrack *wt, enum flush_how how)
{
	uint32_t lag = wt->head - wt->sent_head;

	if (how == FLUSH_FETCH && !wt->inflight[WT_FETCH])
		return submit(wt, WT_FETCH);
	if (wt->nr || (how == FLUSH_LAZY ? lag > wt->mask / 2 : lag != 0))
		return send_commit(wt);
	return 0;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* Spin on tail for a while: 1 if events came, 0 if not, or -errno. */
static int busy_poll(struct wtrack *wt)
{
	uint64_t end = now_ns() + wt->busy_poll_ns;
	int ret = flush(wt, FLUSH_EAGER);

	if (ret < 0)
		return ret;
	do {
		for (int i = 0; i < 64; i++) {
			if (load_tail(wt) != wt->head)
				return 1;
			cpu_relax();
		}
	} while (now_ns() < end);
	return 0;
}

WT_API int wtrack_wait(struct wtrack *wt, struct kvm_wtrack_event *ev, unsigned int max)
{
	bool polled = !(wt->flags & WTRACK_F_BUSY_POLL);
	int ret, n;

	if (wt->mode != WTRACK_MODE_RING)
		return -EOPNOTSUPP;
	if (!max)
		return -EINVAL;
	for (;;) {
		ret = reap_ready(wt);
		if (ret < 0)
			return ret;
		if (wt->error)
			return take_error(wt);
		n = ring_avail(wt);
		if (n < 0)
			return n;
		if (n) {
			ret = flush(wt, FLUSH_LAZY);
			return ret < 0 ? ret : ring_copy(wt, ev, MIN((unsigned int)n, max));
		}
		if (!polled) {
			polled = true;
			ret = busy_poll(wt);
			if (ret)
				continue;
		}
		ret = flush(wt, FLUSH_FETCH);
		if (ret < 0)
			return ret;
		wt->st.sleeps++;
		ret = reap(wt, true);
		if (ret < 0)
			return ret;
	}
}

WT_API int wtrack_peek(struct wtrack *wt, struct kvm_wtrack_event *ev, unsigned int max)
{
	int n;

	if (wt->mode != WTRACK_MODE_RING)
		return -EOPNOTSUPP;
	n = ring_avail(wt);
	return n < 0 ? n : ring_copy(wt, ev, MIN((unsigned int)n, max));
}

/* Queue [gpa, gpa + size), page aligned, merged into the last range if it can. */
static int queue_resolve(struct wtrack *wt, uint64_t gpa, uint64_t size)
{
	struct kvm_wtrack_resolve *last;
	int ret;

	if (wt->nr) {
		last = &wt->buf[wt->queue][wt->nr - 1];
		if (gpa >= last->gpa && gpa + size <= last->gpa + last->size)
			return 0;
		if (gpa == last->gpa + last->size) {
			last->size += size;
			return 0;
		}
	}
	if (wt->nr == KVM_WTRACK_RESOLVE_MAX) {
		ret = send_commit(wt);
		if (ret < 0)
			return ret;
	}
	wt->buf[wt->queue][wt->nr++] = (struct kvm_wtrack_resolve){ .gpa = gpa, .size = size };
	return 0;
}

WT_API int wtrack_resolve(struct wtrack *wt, uint64_t gpa, uint64_t size)
{
	const uint64_t pmask = WT_PAGE_SIZE - 1;
	uint64_t last = gpa + size - 1;

	/* The pages [gpa, last] touches; the very last page of u64 is no GPA. */
	if (!size || last < gpa || (last | pmask) == UINT64_MAX)
		return -EINVAL;
	gpa &= ~pmask;
	size = (last | pmask) + 1 - gpa;
	if (wt->mode != WTRACK_MODE_RING)
		return wtrack_unprotect(wt, gpa, size);
	return queue_resolve(wt, gpa, size);
}

WT_API int wtrack_commit(struct wtrack *wt)
{
	int ret;

	if (wt->mode != WTRACK_MODE_RING)
		return 0;
	ret = reap_ready(wt);
	if (ret >= 0 && (wt->nr || wt->head != wt->sent_head))
		ret = send_commit(wt);
	if (ret >= 0)
		ret = wait_idle(wt, WT_COMMIT);
	return ret < 0 ? ret : take_error(wt);
}

WT_API int wtrack_stats(struct wtrack *wt, struct wtrack_stats *st)
{
	const struct kvm_wtrack_ring_header *h = wt->hdr;

	if (wt->mode != WTRACK_MODE_RING)
		return -EOPNOTSUPP;
	*st = wt->st;
	st->events = __atomic_load_n(&h->events, __ATOMIC_RELAXED);
	st->coalesced = __atomic_load_n(&h->coalesced, __ATOMIC_RELAXED);
	st->space_waits = __atomic_load_n(&h->space_waits, __ATOMIC_RELAXED);
	st->resolved = __atomic_load_n(&h->resolved, __ATOMIC_RELAXED);
	st->polled = __atomic_load_n(&h->polled, __ATOMIC_RELAXED);
	return 0;
}

static int ring_init(struct wtrack *wt, const struct wtrack_params *p, const void *map)
{
	const struct kvm_wtrack_ring_header *hdr = map;
	uint32_t size = hdr->size, off = hdr->events_offset, esize = hdr->event_size;
	const size_t align = _Alignof(struct kvm_wtrack_event);

	/* A layout this header does not describe: not ours to guess at. */
	if (!size || size & (size - 1) || size > KVM_WTRACK_RING_MAX_ENTRIES ||
	    off < sizeof(*hdr) || off % align ||
	    esize < sizeof(struct kvm_wtrack_event) || esize % align)
		return -EIO;
	for (int i = 0; i < WT_NR_BUFS; i++) {
		wt->buf[i] = calloc(KVM_WTRACK_RESOLVE_MAX, sizeof(*wt->buf[i]));
		if (!wt->buf[i])
			return -ENOMEM;
	}
	wt->hdr = hdr;
	wt->events = (const char *)map + off;
	wt->event_size = esize;
	wt->mask = size - 1;
	wt->head = __atomic_load_n(&hdr->head, __ATOMIC_ACQUIRE);
	wt->sent_head = wt->head;
	wt->flags = p->flags;
	wt->busy_poll_ns = p->busy_poll_us * 1000ULL;
	return 0;
}

int wt_ring_open(const struct wtrack_params *p, const void *map,
		 const struct wt_transport *tp, void *priv, struct wtrack **wtp)
{
	struct wtrack *wt = calloc(1, sizeof(*wt));
	int ret;

	if (!wt)
		return -ENOMEM;
	wt->mode = WTRACK_MODE_RING;
	wt->vm_fd = -1;
	wt->ring_fd = -1;
	wt->inflight_buf[WT_FETCH] = wt->inflight_buf[WT_COMMIT] = -1;
	ret = ring_init(wt, p, map);
	if (ret < 0) {
		wt_ring_close(wt);
		return ret;
	}
	wt->tp = tp;
	wt->tp_priv = priv;
	*wtp = wt;
	return 0;
}

/* Frees what wt_ring_open() allocated; the transport too, if it got one. */
void wt_ring_close(struct wtrack *wt)
{
	/* The kernel may still read a COMMIT's buffer: let it finish. */
	while (wt->tp && wt->inflight[WT_COMMIT]) {
		int ret = reap(wt, true);

		if (ret < 0 && ret != -EINTR)
			break;
	}
	if (wt->tp)
		wt->tp->release(wt->tp_priv);
	for (int i = 0; i < WT_NR_BUFS; i++)
		free(wt->buf[i]);
	free(wt);
}
