// SPDX-License-Identifier: GPL-2.0
/*
 * The emulated kernel side of the ring (see emu.h).  One lock covers all
 * of it.  The ring is a memfd mapped twice: read-write here, read-only for
 * the library, so a library write to the ring faults as it would on the
 * kernel's mapping.  Header fields the library reads are written with
 * atomic stores; tail with a store-release after the event.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include "emu.h"

#define SET(field, v)	__atomic_store_n(&(field), (v), __ATOMIC_RELAXED)

static void deadline(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static int cond_wait(struct emu *e, pthread_cond_t *c, const struct timespec *dl)
{
	return -pthread_cond_timedwait(c, &e->lock, dl);
}

#define EMU_JUNK	0xa5

struct emu *emu_create(uint32_t size, uint32_t start, uint32_t events_offset,
		       uint64_t npages)
{
	return emu_create_layout(size, start, events_offset,
				 sizeof(struct kvm_wtrack_event), npages);
}

struct emu *emu_create_layout(uint32_t size, uint32_t start, uint32_t events_offset,
			      uint32_t event_size, uint64_t npages)
{
	struct emu *e = calloc(1, sizeof(*e));
	size_t len = events_offset + (size_t)size * event_size;
	int fd = memfd_create("emu-ring", 0);
	void *rw;

	if (!e || fd < 0 || ftruncate(fd, len))
		abort();
	rw = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	e->ro_map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (rw == MAP_FAILED || e->ro_map == MAP_FAILED)
		abort();
	pthread_mutex_init(&e->lock, NULL);
	pthread_cond_init(&e->vcpu_cond, NULL);
	pthread_cond_init(&e->cq_cond, NULL);
	e->hdr = rw;
	e->events = (char *)rw + events_offset;
	e->event_size = event_size;
	e->map_len = len;
	e->size = size;
	e->khead = start;
	e->hdr->tail = e->hdr->head = start;
	e->hdr->size = size;
	e->hdr->events_offset = events_offset;
	e->hdr->event_size = event_size;
	memset(e->events, EMU_JUNK, (size_t)size * event_size);
	e->npages = npages;
	e->prot = calloc(npages, 1);
	e->pending = calloc(npages, 1);
	e->fetch_copy = calloc(KVM_WTRACK_RESOLVE_MAX, sizeof(*e->fetch_copy));
	e->timeout_ms = 5000;
	if (!e->prot || !e->pending || !e->fetch_copy)
		abort();
	return e;
}

void emu_destroy(struct emu *e)
{
	munmap(e->hdr, e->map_len);
	munmap((void *)e->ro_map, e->map_len);
	free(e->prot);
	free(e->pending);
	free(e->fetch_copy);
	free(e);
}

void emu_protect(struct emu *e, uint64_t first, uint64_t n)
{
	pthread_mutex_lock(&e->lock);
	memset(e->prot + first, 1, n);
	pthread_mutex_unlock(&e->lock);
}

bool emu_protected(struct emu *e, uint64_t page)
{
	bool ret;

	pthread_mutex_lock(&e->lock);
	ret = e->prot[page];
	pthread_mutex_unlock(&e->lock);
	return ret;
}

bool emu_wait_for(struct emu *e, bool (*cond)(struct emu *e))
{
	for (int ms = 0; ms < e->timeout_ms; ms++) {
		pthread_mutex_lock(&e->lock);
		bool ok = cond(e);

		pthread_mutex_unlock(&e->lock);
		if (ok)
			return true;
		usleep(1000);
	}
	return false;
}

static void cq_post(struct emu *e, uint64_t tag, int res)
{
	if (e->cq_tail - e->cq_head == ARRAY_SIZE(e->cq))
		abort();	/* more in flight than the library may have */
	e->cq[e->cq_tail++ % ARRAY_SIZE(e->cq)] = (struct wt_cqe){ .tag = tag, .res = res };
	pthread_cond_broadcast(&e->cq_cond);
	if (e->held) {
		e->held = false;
		cq_post(e, e->held_cqe.tag, e->held_cqe.res);
	}
}

/* The waiting FETCH completes: note if its resolves were touched since. */
static void fetch_done(struct emu *e)
{
	uint32_t n = e->hdr->tail - e->fetch_head;

	if (e->fetch_nr && memcmp(e->fetch_res, e->fetch_copy,
				  e->fetch_nr * sizeof(*e->fetch_copy)))
		e->buf_changed++;
	e->fetch_waiting = false;
	cq_post(e, e->fetch_tag, n);
}

/*
 * A stopped write reports the rest of the page from its first byte; a
 * landed one the page, with LANDED.  The reserved words are zeroed, the
 * bytes past the event keep their junk.
 */
static void post_event(struct emu *e, unsigned int vcpu, uint64_t gpa, uint64_t page,
		       bool landed)
{
	struct kvm_wtrack_ring_header *h = e->hdr;
	const struct kvm_wtrack_event ev = {
		.gpa = gpa,
		.size = EMU_PAGE - (gpa & (EMU_PAGE - 1)),
		.vcpu_id = vcpu,
		.flags = landed ? KVM_WTRACK_EVENT_LANDED : 0,
		.seq = e->seq++,
	};

	/*
	 * A landed write is over: the page loses its protection before the
	 * event is visible, which releases the vCPUs waiting on it.
	 */
	if (landed) {
		if (e->pending[page])
			SET(h->resolved, h->resolved + 1);
		e->prot[page] = e->pending[page] = 0;
		pthread_cond_broadcast(&e->vcpu_cond);
	} else {
		e->pending[page] = 1;
	}
	memcpy(e->events + (size_t)(h->tail & (e->size - 1)) * e->event_size, &ev, sizeof(ev));
	__atomic_store_n(&h->tail, h->tail + 1, __ATOMIC_RELEASE);
	SET(h->events, h->events + 1);
	if (e->fetch_waiting && h->tail != e->fetch_head)
		fetch_done(e);
}

int emu_write(struct emu *e, unsigned int vcpu, uint64_t gpa)
{
	uint64_t page = (gpa - EMU_BASE_GPA) / EMU_PAGE;
	bool posted = false, joined = false, waited = false;
	struct timespec dl;
	int ret = 0;

	deadline(&dl, e->timeout_ms);
	pthread_mutex_lock(&e->lock);
	while (!ret && e->prot[page]) {
		if (e->pending[page]) {
			if (!posted && !joined)
				SET(e->hdr->coalesced, e->hdr->coalesced + 1);
			joined = !posted;
		} else if (e->hdr->tail - e->khead == e->size) {
			if (!waited)
				SET(e->hdr->space_waits, e->hdr->space_waits + 1);
			waited = true;
		} else {
			post_event(e, vcpu, gpa, page, false);
			posted = true;
			continue;
		}
		ret = cond_wait(e, &e->vcpu_cond, &dl);
	}
	pthread_mutex_unlock(&e->lock);
	return ret;
}

int emu_write_landed(struct emu *e, unsigned int vcpu, uint64_t gpa)
{
	uint64_t page = (gpa - EMU_BASE_GPA) / EMU_PAGE;
	bool waited = false;
	struct timespec dl;
	int ret = 0;

	deadline(&dl, e->timeout_ms);
	pthread_mutex_lock(&e->lock);
	while (!ret && e->prot[page] && e->hdr->tail - e->khead == e->size) {
		if (!waited)
			SET(e->hdr->space_waits, e->hdr->space_waits + 1);
		waited = true;
		ret = cond_wait(e, &e->vcpu_cond, &dl);
	}
	if (!ret && e->prot[page])
		post_event(e, vcpu, gpa & ~(EMU_PAGE - 1), page, true);
	pthread_mutex_unlock(&e->lock);
	return ret;
}

static bool cmd_reserved_zero(const struct kvm_wtrack_ring_cmd *c)
{
	for (unsigned int i = 0; i < ARRAY_SIZE(c->reserved); i++)
		if (c->reserved[i])
			return false;
	return !c->flags && !c->reserved0;
}

/*
 * Every check first, in the kernel's order: a failing command changes
 * nothing.  The command's own fields, then the resolve array, then the
 * ring's state.
 */
static int check_cmd(struct emu *e, unsigned int op, const struct kvm_wtrack_ring_cmd *c)
{
	const struct kvm_wtrack_resolve *r = (const void *)(uintptr_t)c->resolve_addr;
	bool fetch = op != KVM_WTRACK_RING_COMMIT;

	if (op != KVM_WTRACK_RING_FETCH && op != KVM_WTRACK_RING_COMMIT &&
	    op != KVM_WTRACK_RING_COMMIT_AND_FETCH)
		return -ENOTTY;
	if (!cmd_reserved_zero(c))
		return -EINVAL;
	if (op == KVM_WTRACK_RING_FETCH && (c->nr_resolve || c->resolve_addr))
		return -EINVAL;
	if (c->nr_resolve > KVM_WTRACK_RESOLVE_MAX || (!c->nr_resolve && c->resolve_addr))
		return -EINVAL;
	if (c->nr_resolve && !r)
		return -EFAULT;
	for (uint32_t i = 0; i < c->nr_resolve; i++) {
		if (r[i].flags || r[i].reserved)
			return -EINVAL;
		if (!r[i].size || (r[i].gpa | r[i].size) & (EMU_PAGE - 1) ||
		    r[i].gpa + r[i].size < r[i].gpa)
			return -EINVAL;
	}
	if (fetch && e->fetch_waiting) {
		e->busy_fetches++;
		return -EBUSY;
	}
	if ((uint32_t)(c->head - e->khead) > (uint32_t)(e->hdr->tail - e->khead))
		return -EINVAL;
	return 0;
}

/* Pages outside the emulated memory have no memslot: skipped, as by KVM. */
static void resolve(struct emu *e, const struct kvm_wtrack_resolve *r, uint32_t nr)
{
	const uint64_t end = EMU_BASE_GPA + e->npages * EMU_PAGE;

	for (uint32_t i = 0; i < nr; i++) {
		uint64_t lo = r[i].gpa < EMU_BASE_GPA ? EMU_BASE_GPA : r[i].gpa;
		uint64_t hi = r[i].gpa + r[i].size > end ? end : r[i].gpa + r[i].size;

		for (uint64_t a = lo; a < hi; a += EMU_PAGE) {
			uint64_t p = (a - EMU_BASE_GPA) / EMU_PAGE;

			if (e->pending[p])
				SET(e->hdr->resolved, e->hdr->resolved + 1);
			e->prot[p] = e->pending[p] = 0;
			e->unprotected_pages++;
		}
	}
	e->resolve_ranges += nr;
	if (nr > e->max_nr_resolve)
		e->max_nr_resolve = nr;
}

static int run_cmd(struct emu *e, unsigned int op, const struct kvm_wtrack_ring_cmd *c,
		   uint64_t tag)
{
	const struct kvm_wtrack_resolve *r = (const void *)(uintptr_t)c->resolve_addr;
	int ret = check_cmd(e, op, c);

	if (!ret && e->fail_next) {
		ret = e->fail_next;
		e->fail_next = 0;
	}
	if (ret) {
		e->bad_cmds++;
		return ret;
	}
	e->khead = c->head;
	SET(e->hdr->head, c->head);
	resolve(e, r, c->nr_resolve);
	pthread_cond_broadcast(&e->vcpu_cond);
	if (op == KVM_WTRACK_RING_COMMIT)
		return 0;
	if (e->hdr->tail != c->head)
		return e->hdr->tail - c->head;
	e->fetch_waiting = true;
	e->fetch_head = c->head;
	e->fetch_tag = tag;
	e->fetch_res = (void *)r;
	e->fetch_nr = c->nr_resolve;
	if (c->nr_resolve)
		memcpy(e->fetch_copy, r, c->nr_resolve * sizeof(*r));
	return EMU_PENDING;
}

int emu_cmd(struct emu *e, unsigned int op, const struct kvm_wtrack_ring_cmd *cmd,
	    uint64_t tag)
{
	int ret;

	pthread_mutex_lock(&e->lock);
	ret = run_cmd(e, op, cmd, tag);
	pthread_mutex_unlock(&e->lock);
	return ret;
}

/* Run a command from the library and post its completion. */
static void issue(struct emu *e, unsigned int op, const struct kvm_wtrack_ring_cmd *cmd,
		  uint64_t tag)
{
	int ret = run_cmd(e, op, cmd, tag);

	if (ret == EMU_PENDING)
		return;
	if (op == KVM_WTRACK_RING_COMMIT && e->hold_commit) {
		e->hold_commit = false;
		e->held = true;
		e->held_cqe = (struct wt_cqe){ .tag = tag, .res = ret };
		return;
	}
	cq_post(e, tag, ret);
}

static void run_deferred(struct emu *e)
{
	for (unsigned int i = 0; i < e->sq_n; i++)
		issue(e, e->sq[i].op, &e->sq[i].cmd, e->sq[i].tag);
	e->sq_n = 0;
}

static int emu_submit(void *priv, unsigned int op, const struct kvm_wtrack_ring_cmd *cmd,
		      uint64_t tag)
{
	struct emu *e = priv;

	pthread_mutex_lock(&e->lock);
	e->submits++;
	if (e->deferred && e->sq_n < ARRAY_SIZE(e->sq)) {
		e->sq[e->sq_n].op = op;
		e->sq[e->sq_n].cmd = *cmd;
		e->sq[e->sq_n++].tag = tag;
	} else {
		issue(e, op, cmd, tag);
	}
	pthread_mutex_unlock(&e->lock);
	return 0;
}

static int emu_reap(void *priv, struct wt_cqe *cqe, bool wait)
{
	struct emu *e = priv;
	struct timespec dl;
	int ret = 0;

	deadline(&dl, e->timeout_ms);
	pthread_mutex_lock(&e->lock);
	run_deferred(e);
	while (!ret && e->cq_head == e->cq_tail) {
		if (!wait)
			goto out;
		if (e->intr_next) {
			e->intr_next = false;
			ret = -EINTR;
		} else {
			ret = cond_wait(e, &e->cq_cond, &dl);
		}
	}
	if (!ret) {
		*cqe = e->cq[e->cq_head++ % ARRAY_SIZE(e->cq)];
		ret = 1;
	}
out:
	pthread_mutex_unlock(&e->lock);
	return ret;
}

static void emu_release(void *priv)
{
	(void)priv;
}

const struct wt_transport emu_transport = {
	.submit = emu_submit,
	.reap = emu_reap,
	.release = emu_release,
};
