// SPDX-License-Identifier: GPL-2.0
/*
 * Host tests of libwtrack's ring consumer against an emulated kernel
 * (emu.c): vCPU threads write protected pages and wait, the library
 * consumes and resolves.  Prints TAP.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <liburing.h>
#include <linux/kvm.h>
#include "emu.h"
#include "tap.h"

static uint64_t page_gpa(uint64_t page)
{
	return EMU_BASE_GPA + page * EMU_PAGE;
}

static struct wtrack *open_emu(struct emu *e, unsigned int flags)
{
	struct wtrack_params p = { .flags = flags }, q;
	struct wtrack *wt = NULL;

	if (wt_check_params(&p, &q) || wt_ring_open(&q, e->ro_map, &emu_transport, e, &wt))
		abort();
	return wt;
}

/* A vCPU: writes its pages in program order, each landing after its resolve. */
struct vcpu {
	pthread_t thread;
	struct emu *e;
	unsigned int id;
	uint64_t *gpas;
	unsigned int n;
	int ret;
};

static void *vcpu_run(void *arg)
{
	struct vcpu *v = arg;

	for (unsigned int i = 0; i < v->n && !v->ret; i++)
		v->ret = emu_write(v->e, v->id, v->gpas[i]);
	return NULL;
}

static struct vcpu *start_vcpus(struct emu *e, unsigned int nr, unsigned int writes,
				uint64_t (*gpa)(unsigned int vcpu, unsigned int i))
{
	struct vcpu *v = calloc(nr, sizeof(*v));

	for (unsigned int i = 0; i < nr; i++) {
		v[i] = (struct vcpu){ .e = e, .id = i, .n = writes };
		v[i].gpas = calloc(writes, sizeof(uint64_t));
		for (unsigned int w = 0; w < writes; w++)
			v[i].gpas[w] = gpa(i, w);
		pthread_create(&v[i].thread, NULL, vcpu_run, &v[i]);
	}
	return v;
}

static void join_vcpus(struct vcpu *v, unsigned int nr)
{
	for (unsigned int i = 0; i < nr; i++) {
		pthread_join(v[i].thread, NULL);
		CHECK_EQ(v[i].ret, 0);
		free(v[i].gpas);
	}
	free(v);
}

/* Take @want events, resolving each one's page; with @peek, poll-style. */
static int consume(struct wtrack *wt, struct kvm_wtrack_event *log, unsigned int want,
		   unsigned int batch, bool peek)
{
	struct kvm_wtrack_event ev[64];
	unsigned int got = 0;
	int n, ret;

	while (got < want) {
		n = peek ? wtrack_peek(wt, ev, batch) : wtrack_wait(wt, ev, batch);
		if (n < 0)
			return n;
		for (int i = 0; i < n && got < want; i++) {
			log[got++] = ev[i];
			ret = wtrack_resolve(wt, ev[i].gpa, ev[i].size);
			if (ret)
				return ret;
		}
		ret = peek ? wtrack_commit(wt) : 0;
		if (ret)
			return ret;
	}
	return wtrack_commit(wt);
}

/* Consecutive seqs from 0, and each vCPU's events in its program order. */
static void check_log(const struct kvm_wtrack_event *log, unsigned int n, struct emu *e,
		      unsigned int vcpus, uint64_t (*gpa)(unsigned int, unsigned int))
{
	unsigned int *next = calloc(vcpus, sizeof(*next));

	for (unsigned int i = 0; i < n; i++) {
		const struct kvm_wtrack_event *ev = &log[i];

		CHECK_EQ(ev->seq, i);
		CHECK(ev->vcpu_id < vcpus);
		if (ev->vcpu_id >= vcpus || ev->seq != i)
			break;
		CHECK_EQ(ev->gpa, gpa(ev->vcpu_id, next[ev->vcpu_id]++));
		CHECK_EQ(ev->size, EMU_PAGE - (ev->gpa & (EMU_PAGE - 1)));
		CHECK_EQ(ev->flags, 0);		/* a stopped write */
		for (unsigned int r = 0; r < ARRAY_SIZE(ev->reserved); r++)
			CHECK_EQ(ev->reserved[r], 0);
	}
	CHECK_EQ(e->bad_cmds, 0);
	CHECK_EQ(e->buf_changed, 0);
	free(next);
}

/* Page v * 1000 + i, written at offset 8 * v. */
static uint64_t spread_gpa(unsigned int v, unsigned int i)
{
	return page_gpa(v * 1000 + i) + 8 * v;
}

/*
 * @vcpus threads each write @writes pages of their own through a ring of
 * @size entries whose indices start at @start, its events @event_size
 * bytes apart (0: sizeof); the consumer takes at most @batch events at a
 * time, and with @fill not before the ring is full.
 */
struct stream {
	uint32_t size, start, event_size;
	unsigned int vcpus, writes, batch, flags;
	bool deferred, peek, fill;
};

static bool someone_waits_for_space(struct emu *e)
{
	return e->hdr->space_waits > 0;
}

static void run_stream(const struct stream *s, struct wtrack_stats *st)
{
	struct emu *e = emu_create_layout(s->size, s->start, 128,
					  s->event_size ?: sizeof(struct kvm_wtrack_event),
					  s->vcpus * 1000);
	struct wtrack *wt = open_emu(e, s->flags);
	unsigned int total = s->vcpus * s->writes;
	struct kvm_wtrack_event *log = calloc(total, sizeof(*log));
	struct vcpu *v;

	e->deferred = s->deferred;
	for (unsigned int i = 0; i < s->vcpus; i++)
		emu_protect(e, i * 1000, s->writes);
	v = start_vcpus(e, s->vcpus, s->writes, spread_gpa);
	if (s->fill)
		CHECK(emu_wait_for(e, someone_waits_for_space));
	CHECK_EQ(consume(wt, log, total, s->batch, s->peek), 0);
	join_vcpus(v, s->vcpus);
	check_log(log, total, e, s->vcpus, spread_gpa);
	CHECK_EQ(wtrack_stats(wt, st), 0);
	CHECK_EQ(st->events, total);
	CHECK_EQ(st->resolved, total);
	CHECK_EQ(st->coalesced, 0);
	CHECK_EQ(e->hdr->tail, s->start + total);
	CHECK_EQ(e->khead, e->hdr->tail);
	wtrack_close(wt);
	free(log);
	emu_destroy(e);
}

static void test_params(void)
{
	struct wtrack_params p = { 0 }, q;

	CHECK_EQ(wt_check_params(NULL, &q), 0);
	CHECK_EQ(q.ring_entries, WTRACK_DEFAULT_ENTRIES);
	p.ring_entries = 48;
	CHECK_EQ(wt_check_params(&p, &q), -EINVAL);
	p.ring_entries = KVM_WTRACK_RING_MIN_ENTRIES / 2;
	CHECK_EQ(wt_check_params(&p, &q), -EINVAL);
	p.ring_entries = KVM_WTRACK_RING_MAX_ENTRIES * 2;
	CHECK_EQ(wt_check_params(&p, &q), -EINVAL);
	p.ring_entries = KVM_WTRACK_RING_MAX_ENTRIES;
	CHECK_EQ(wt_check_params(&p, &q), 0);
	p.flags = 1U << 7;
	CHECK_EQ(wt_check_params(&p, &q), -EINVAL);
	p = (struct wtrack_params){ .mode = WTRACK_MODE_EXIT, .ring_entries = 64 };
	CHECK_EQ(wt_check_params(&p, &q), -EINVAL);
	p = (struct wtrack_params){ .mode = 2 };
	CHECK_EQ(wt_check_params(&p, &q), -EINVAL);
	p = (struct wtrack_params){ .resv[3] = 1 };
	CHECK_EQ(wt_check_params(&p, &q), -EINVAL);
}

/* Not a VM: every step fails cleanly. */
static void test_open_no_kvm(void)
{
	struct wtrack *wt = NULL;
	int fd = open("/dev/null", O_RDWR);

	CHECK_EQ(wtrack_open(fd, NULL, &wt), -ENOTTY);
	CHECK(wt == NULL);
	close(fd);
	CHECK_EQ(wtrack_open(-1, NULL, &wt), -EBADF);
}

static void test_peek_empty(void)
{
	struct emu *e = emu_create(16, 0, 4096, 16);
	struct wtrack *wt = open_emu(e, 0);
	struct kvm_wtrack_event ev[4];

	CHECK_EQ(wtrack_peek(wt, ev, 4), 0);
	CHECK_EQ(wtrack_wait(wt, ev, 0), -EINVAL);
	CHECK_EQ(wtrack_commit(wt), 0);
	CHECK_EQ(e->submits, 0);
	CHECK_EQ(wtrack_ring_fd(wt), -1);
	wtrack_close(wt);
	emu_destroy(e);
}

static uint64_t basic_gpa(unsigned int v, unsigned int i)
{
	return page_gpa(3 * i + v) + 0x10 * i;
}

static void test_basic(void)
{
	struct emu *e = emu_create(16, 0, 4096, 16);
	struct wtrack *wt = open_emu(e, 0);
	struct kvm_wtrack_event log[3];
	struct wtrack_stats st;
	struct vcpu *v;

	emu_protect(e, 0, 16);
	v = start_vcpus(e, 1, 3, basic_gpa);
	CHECK_EQ(consume(wt, log, 3, 1, false), 0);
	join_vcpus(v, 1);
	check_log(log, 3, e, 1, basic_gpa);
	CHECK_EQ(log[1].gpa, page_gpa(3) + 0x10);
	CHECK_EQ(log[1].size, EMU_PAGE - 0x10);
	CHECK(!emu_protected(e, 3) && emu_protected(e, 4));
	CHECK_EQ(wtrack_stats(wt, &st), 0);
	CHECK_EQ(st.resolves, 3);
	/* The first event may beat the first wait; the others cannot. */
	CHECK(st.fetches >= 2 && st.sleeps >= 1);
	wtrack_close(wt);
	emu_destroy(e);
}

/* The free-running u32 indices wrap while the ring is in use. */
static void test_wrap(void)
{
	struct stream s = { .size = 16, .start = UINT32_MAX - 20, .vcpus = 2,
			    .writes = 100, .batch = 7 };
	struct wtrack_stats st;

	run_stream(&s, &st);
}

/* More vCPUs than entries: they wait for space, and nothing is lost. */
static void test_full_ring(void)
{
	struct stream s = { .size = 16, .vcpus = 32, .writes = 8, .batch = 5, .fill = true };
	struct wtrack_stats st;

	run_stream(&s, &st);
	CHECK(st.space_waits > 0);
}

static void test_full_ring_busy_poll(void)
{
	struct stream s = { .size = 16, .start = UINT32_MAX - 5, .vcpus = 32, .writes = 8,
			    .batch = 64, .flags = WTRACK_F_BUSY_POLL, .fill = true };
	struct wtrack_stats st;

	run_stream(&s, &st);
	CHECK(st.space_waits > 0);
}

/* Commands issued only later, as with SQPOLL: buffers must stay intact. */
static void test_full_ring_deferred(void)
{
	struct stream s = { .size = 16, .vcpus = 32, .writes = 8, .batch = 3,
			    .flags = WTRACK_F_SQPOLL, .deferred = true, .fill = true };
	struct wtrack_stats st;

	run_stream(&s, &st);
	CHECK(st.space_waits > 0);
}

/* poll()-style consumer: wtrack_peek() and wtrack_commit() only. */
static void test_peek_commit(void)
{
	struct stream s = { .size = 16, .vcpus = 20, .writes = 4, .batch = 64, .peek = true };
	struct wtrack_stats st;

	run_stream(&s, &st);
	CHECK_EQ(st.fetches, 0);
	CHECK_EQ(st.sleeps, 0);
}

/* A later kernel's longer events: read at the header's stride. */
static void test_event_stride(void)
{
	struct stream s = { .size = 16, .start = UINT32_MAX - 9, .event_size = 128,
			    .vcpus = 4, .writes = 20, .batch = 7 };
	struct stream p = { .size = 32, .event_size = 72, .vcpus = 3, .writes = 30,
			    .batch = 64, .peek = true };
	struct wtrack_stats st;

	run_stream(&s, &st);
	run_stream(&p, &st);
}

/* A ring layout the library does not know is refused, not guessed at. */
static void test_bad_layout(void)
{
	static const struct { uint32_t offset, event_size; } bad[] = {
		{ 4096, sizeof(struct kvm_wtrack_event) - 8 },	/* the old 32 bytes */
		{ 4096, 0 },
		{ 4096, sizeof(struct kvm_wtrack_event) + 4 },	/* misaligned */
		{ 64, sizeof(struct kvm_wtrack_event) },	/* over the header */
		{ 4100, sizeof(struct kvm_wtrack_event) },
	};

	for (unsigned int i = 0; i < ARRAY_SIZE(bad); i++) {
		struct emu *e = emu_create(16, 0, 4096, 16);
		struct wtrack_params p = { 0 }, q;
		struct wtrack *wt = NULL;

		/* The emulated kernel's writable view of the header. */
		e->hdr->events_offset = bad[i].offset;
		e->hdr->event_size = bad[i].event_size;
		CHECK_EQ(wt_check_params(&p, &q), 0);
		CHECK_EQ(wt_ring_open(&q, e->ro_map, &emu_transport, e, &wt), -EIO);
		CHECK(wt == NULL);
		emu_destroy(e);
	}
}

/* Random program orders, revisited pages included. */
static uint64_t order[3][64];

static uint64_t order_gpa(unsigned int v, unsigned int i)
{
	return order[v][i];
}

static void test_ordering(void)
{
	struct emu *e = emu_create(32, 0, 4096, 3 * 64);
	struct wtrack *wt = open_emu(e, 0);
	struct kvm_wtrack_event log[3 * 48];
	struct vcpu *v;

	srand(42);
	for (unsigned int t = 0; t < 3; t++) {
		for (unsigned int i = 0; i < 48; i++)
			order[t][i] = page_gpa(t * 64 + i) + 8 * t;
		for (unsigned int i = 47; i > 0; i--) {
			unsigned int j = rand() % (i + 1);
			uint64_t x = order[t][i];

			order[t][i] = order[t][j];
			order[t][j] = x;
		}
		/* Written again after its event was resolved: no new event. */
		for (unsigned int i = 48; i < 64; i++)
			order[t][i] = order[t][i - 48];
	}
	emu_protect(e, 0, 3 * 64);
	v = start_vcpus(e, 3, 64, order_gpa);
	CHECK_EQ(consume(wt, log, 3 * 48, 5, false), 0);
	join_vcpus(v, 3);
	check_log(log, 3 * 48, e, 3, order_gpa);
	CHECK_EQ(e->hdr->events, 3 * 48);
	wtrack_close(wt);
	emu_destroy(e);
}

/* KVM's own writes: a thread posting landed events into a full ring. */
static void *landed_writer(void *arg)
{
	struct vcpu *v = arg;

	for (unsigned int i = 0; i < v->n && !v->ret; i++)
		v->ret = emu_write_landed(v->e, v->id, v->gpas[i]);
	return NULL;
}

/*
 * Landed events need no resolve: the consumer only hands entries back,
 * and does so before it has drained the ring, with head-only COMMITs.
 */
static void test_landed(void)
{
	struct emu *e = emu_create(16, 0, 4096, 128);
	struct wtrack *wt = open_emu(e, 0);
	struct vcpu v = { .e = e, .id = 7, .n = 100 };
	struct kvm_wtrack_event ev[4];
	struct wtrack_stats st;
	unsigned int got = 0;
	int n = 0;

	emu_protect(e, 0, 128);
	v.gpas = calloc(v.n, sizeof(uint64_t));
	for (unsigned int i = 0; i < v.n; i++)
		v.gpas[i] = page_gpa(i) + 0x80;
	pthread_create(&v.thread, NULL, landed_writer, &v);
	CHECK(emu_wait_for(e, someone_waits_for_space));
	while (got < v.n && (n = wtrack_wait(wt, ev, 4)) > 0) {
		for (int i = 0; i < n; i++, got++) {
			CHECK_EQ(ev[i].gpa, page_gpa(got));
			CHECK_EQ(ev[i].size, EMU_PAGE);
			CHECK_EQ(ev[i].flags, KVM_WTRACK_EVENT_LANDED);
			CHECK_EQ(ev[i].seq, got);
			CHECK(!emu_protected(e, got));	/* ended before posted */
		}
	}
	CHECK(n > 0);
	CHECK_EQ(got, v.n);
	pthread_join(v.thread, NULL);
	CHECK_EQ(v.ret, 0);
	CHECK_EQ(wtrack_stats(wt, &st), 0);
	CHECK(st.commits > 0);
	CHECK_EQ(st.resolves, 0);
	CHECK(st.space_waits > 0);
	CHECK_EQ(e->bad_cmds, 0);
	free(v.gpas);
	wtrack_close(wt);
	emu_destroy(e);
}

static uint64_t page5_gpa(unsigned int v, unsigned int i)
{
	(void)v;
	(void)i;
	return page_gpa(5) + 0x123;
}

/*
 * KVM writes a page a vCPU waits on: the landed event comes with the end
 * of the page's protection, which releases the vCPU without a resolve.
 */
static void test_landed_releases(void)
{
	struct emu *e = emu_create(16, 0, 4096, 16);
	struct wtrack *wt = open_emu(e, 0);
	struct kvm_wtrack_event ev[4];
	struct wtrack_stats st;
	struct vcpu *v;

	emu_protect(e, 0, 16);
	v = start_vcpus(e, 1, 1, page5_gpa);
	CHECK_EQ(wtrack_wait(wt, ev, 4), 1);
	CHECK_EQ(ev[0].flags, 0);
	CHECK_EQ(ev[0].gpa, page_gpa(5) + 0x123);
	CHECK_EQ(ev[0].size, EMU_PAGE - 0x123);
	CHECK_EQ(emu_write_landed(e, 1, page_gpa(5) + 8), 0);
	join_vcpus(v, 1);
	CHECK_EQ(wtrack_wait(wt, ev, 4), 1);
	CHECK_EQ(ev[0].flags, KVM_WTRACK_EVENT_LANDED);
	CHECK_EQ(ev[0].gpa, page_gpa(5));
	CHECK_EQ(ev[0].size, EMU_PAGE);
	CHECK_EQ(ev[0].vcpu_id, 1);
	CHECK_EQ(ev[0].seq, 1);
	CHECK(!emu_protected(e, 5) && emu_protected(e, 4) && emu_protected(e, 6));
	CHECK_EQ(wtrack_commit(wt), 0);
	CHECK_EQ(wtrack_stats(wt, &st), 0);
	CHECK_EQ(st.events, 2);
	CHECK_EQ(st.resolved, 1);	/* by the landed write */
	CHECK_EQ(st.resolves, 0);
	CHECK_EQ(e->khead, e->hdr->tail);
	CHECK_EQ(e->bad_cmds, 0);
	wtrack_close(wt);
	emu_destroy(e);
}

static uint64_t same_gpa(unsigned int v, unsigned int i)
{
	return page_gpa(5) + 8 * v + i;
}

static bool three_joined(struct emu *e)
{
	return e->hdr->coalesced == 3;
}

/* Four vCPUs on one page: one event, and one resolve wakes them all. */
static void test_coalesce(void)
{
	struct emu *e = emu_create(16, 0, 4096, 16);
	struct wtrack *wt = open_emu(e, 0);
	struct kvm_wtrack_event ev[4];
	struct wtrack_stats st;
	struct vcpu *v;

	emu_protect(e, 0, 16);
	v = start_vcpus(e, 4, 1, same_gpa);
	CHECK_EQ(wtrack_wait(wt, ev, 4), 1);
	CHECK(emu_wait_for(e, three_joined));
	CHECK_EQ(wtrack_peek(wt, ev + 1, 3), 0);
	CHECK_EQ(ev[0].gpa & ~(EMU_PAGE - 1), page_gpa(5));
	CHECK_EQ(wtrack_resolve(wt, ev[0].gpa, ev[0].size), 0);
	CHECK_EQ(wtrack_commit(wt), 0);
	join_vcpus(v, 4);
	CHECK_EQ(wtrack_stats(wt, &st), 0);
	CHECK_EQ(st.events, 1);
	CHECK_EQ(st.coalesced, 3);
	CHECK_EQ(st.resolved, 1);
	CHECK_EQ(st.polled, 0);	/* the emulated kernel never polls */
	CHECK_EQ(e->bad_cmds, 0);
	wtrack_close(wt);
	emu_destroy(e);
}

static uint64_t page10_gpa(unsigned int v, unsigned int i)
{
	(void)v;
	return page_gpa(10 + i);
}

/* One way to spoil a good COMMIT of page 1's resolve, which it must refuse. */
struct bad_case {
	const char *what;
	unsigned int op;
	int err;
	void (*spoil)(struct kvm_wtrack_ring_cmd *c, struct kvm_wtrack_resolve *r,
		      uint32_t khead);
};

static void head_past_tail(struct kvm_wtrack_ring_cmd *c, struct kvm_wtrack_resolve *r,
			   uint32_t khead)
{
	(void)r;
	c->head = khead + 2;
}

static void head_before_last(struct kvm_wtrack_ring_cmd *c, struct kvm_wtrack_resolve *r,
			     uint32_t khead)
{
	(void)r;
	c->head = khead - 1;
}

#define SPOIL(name, stmt)							\
static void name(struct kvm_wtrack_ring_cmd *c, struct kvm_wtrack_resolve *r,	\
		 uint32_t khead)						\
{										\
	(void)c; (void)r; (void)khead;						\
	stmt;									\
}

SPOIL(too_many, c->nr_resolve = KVM_WTRACK_RESOLVE_MAX + 1)
SPOIL(cmd_flags, c->flags = 1)
SPOIL(cmd_high_flag, c->flags = 1U << 31)
SPOIL(cmd_reserved0, c->reserved0 = 1)
SPOIL(cmd_reserved_0, c->reserved[0] = 1)
SPOIL(cmd_reserved_1, c->reserved[1] = 1ULL << 63)
SPOIL(cmd_reserved_2, c->reserved[2] = 1)
SPOIL(res_flags, r[0].flags = 1)
SPOIL(res_reserved, r[0].reserved = 1)
SPOIL(second_res_flags, c->nr_resolve = 2; r[1].flags = 1ULL << 40)
SPOIL(second_res_unaligned, c->nr_resolve = 2; r[1].gpa += 8)
SPOIL(res_empty, r[0].size = 0)
SPOIL(addr_without_ranges, c->nr_resolve = 0)
SPOIL(fetch_with_ranges, (void)0)
SPOIL(fetch_with_addr, c->nr_resolve = 0)

static const struct bad_case bad_cases[] = {
	{ "head past tail", KVM_WTRACK_RING_COMMIT, -EINVAL, head_past_tail },
	{ "head before the last head", KVM_WTRACK_RING_COMMIT, -EINVAL, head_before_last },
	{ "nr_resolve over the max", KVM_WTRACK_RING_COMMIT, -EINVAL, too_many },
	{ "cmd flags", KVM_WTRACK_RING_COMMIT, -EINVAL, cmd_flags },
	{ "cmd flag 31", KVM_WTRACK_RING_COMMIT_AND_FETCH, -EINVAL, cmd_high_flag },
	{ "cmd reserved0", KVM_WTRACK_RING_COMMIT, -EINVAL, cmd_reserved0 },
	{ "cmd reserved[0]", KVM_WTRACK_RING_COMMIT, -EINVAL, cmd_reserved_0 },
	{ "cmd reserved[1]", KVM_WTRACK_RING_COMMIT_AND_FETCH, -EINVAL, cmd_reserved_1 },
	{ "cmd reserved[2]", KVM_WTRACK_RING_COMMIT, -EINVAL, cmd_reserved_2 },
	{ "resolve flags", KVM_WTRACK_RING_COMMIT, -EINVAL, res_flags },
	{ "resolve reserved", KVM_WTRACK_RING_COMMIT_AND_FETCH, -EINVAL, res_reserved },
	{ "second resolve's flags", KVM_WTRACK_RING_COMMIT, -EINVAL, second_res_flags },
	{ "second resolve unaligned", KVM_WTRACK_RING_COMMIT, -EINVAL, second_res_unaligned },
	{ "empty resolve", KVM_WTRACK_RING_COMMIT, -EINVAL, res_empty },
	{ "COMMIT: an address, no ranges", KVM_WTRACK_RING_COMMIT, -EINVAL,
	  addr_without_ranges },
	{ "FETCH with ranges", KVM_WTRACK_RING_FETCH, -EINVAL, fetch_with_ranges },
	{ "FETCH with an address", KVM_WTRACK_RING_FETCH, -EINVAL, fetch_with_addr },
};

/*
 * The kernel's checks: a bad head, batch, flag or reserved field is
 * refused and changes nothing, not even the part of the command that was
 * good (page 1's resolve, the head).
 */
static void test_bad_cmd(void)
{
	struct emu *e = emu_create(16, UINT32_MAX - 1, 4096, 16);
	struct kvm_wtrack_ring_header before;
	struct wtrack *wt = open_emu(e, 0);
	struct kvm_wtrack_event ev[2];
	struct vcpu *v;

	emu_protect(e, 0, 16);
	v = start_vcpus(e, 1, 1, page10_gpa);
	CHECK_EQ(wtrack_wait(wt, ev, 2), 1);		/* tail is now head + 1 */
	before = *e->hdr;
	for (unsigned int i = 0; i < ARRAY_SIZE(bad_cases); i++) {
		const struct bad_case *b = &bad_cases[i];
		struct kvm_wtrack_resolve r[2] = {
			{ .gpa = page_gpa(1), .size = EMU_PAGE },
			{ .gpa = page_gpa(2), .size = EMU_PAGE },
		};
		struct kvm_wtrack_ring_cmd c = {
			.head = e->khead + 1,
			.nr_resolve = 1,
			.resolve_addr = (uintptr_t)r,
		};
		int ret;

		b->spoil(&c, r, e->khead);
		ret = emu_cmd(e, b->op, &c, 9);
		if (ret != b->err)
			printf("# %s: %d, want %d\n", b->what, ret, b->err);
		CHECK_EQ(ret, b->err);
	}
	CHECK(!memcmp(&before, e->hdr, sizeof(before)));
	CHECK_EQ(e->khead, before.head);
	CHECK(emu_protected(e, 1) && emu_protected(e, 2));
	CHECK(!e->fetch_waiting);
	CHECK_EQ(e->bad_cmds, ARRAY_SIZE(bad_cases));
	/* The library's state is untouched by those: it goes on. */
	e->bad_cmds = 0;
	CHECK_EQ(wtrack_resolve(wt, ev[0].gpa, ev[0].size), 0);
	CHECK_EQ(wtrack_commit(wt), 0);
	join_vcpus(v, 1);
	CHECK_EQ(e->bad_cmds, 0);
	wtrack_close(wt);
	emu_destroy(e);
}

/* A resolve of pages without memory: skipped, the rest resolved. */
static void test_resolve_outside(void)
{
	struct emu *e = emu_create(16, 0, 4096, 16);
	struct kvm_wtrack_resolve r[2] = {
		{ .gpa = EMU_BASE_GPA - 4 * EMU_PAGE, .size = 6 * EMU_PAGE },
		{ .gpa = page_gpa(15), .size = 4 * EMU_PAGE },
	};
	struct kvm_wtrack_ring_cmd c = { .nr_resolve = 2, .resolve_addr = (uintptr_t)r };

	emu_protect(e, 0, 16);
	CHECK_EQ(emu_cmd(e, KVM_WTRACK_RING_COMMIT, &c, 9), 0);
	CHECK(!emu_protected(e, 0) && !emu_protected(e, 1) && emu_protected(e, 2));
	CHECK(emu_protected(e, 14) && !emu_protected(e, 15));
	CHECK_EQ(e->unprotected_pages, 3);
	emu_destroy(e);
}

/* More ranges than one command takes: split, each batch within the max. */
static void test_resolve_split(void)
{
	struct emu *e = emu_create(16, 0, 4096, 6000);
	struct wtrack *wt = open_emu(e, 0);
	struct wtrack_stats st;
	unsigned int wrong = 0;

	emu_protect(e, 0, 6000);
	for (unsigned int i = 0; i < 2500; i++)
		CHECK_EQ(wtrack_resolve(wt, page_gpa(2 * i), 1), 0);
	/* Adjacent pages merge into the last range. */
	for (unsigned int i = 5100; i < 5200; i++)
		CHECK_EQ(wtrack_resolve(wt, page_gpa(i), EMU_PAGE), 0);
	CHECK_EQ(wtrack_resolve(wt, page_gpa(5150) + 7, 9), 0);
	CHECK_EQ(wtrack_commit(wt), 0);
	CHECK_EQ(e->bad_cmds, 0);
	CHECK_EQ(e->max_nr_resolve, KVM_WTRACK_RESOLVE_MAX);
	CHECK_EQ(e->resolve_ranges, 2501);
	CHECK_EQ(e->unprotected_pages, 2600);
	for (unsigned int i = 0; i < 5000; i++)
		wrong += emu_protected(e, i) != i % 2;
	CHECK_EQ(wrong, 0);
	CHECK(!emu_protected(e, 5100) && !emu_protected(e, 5199));
	CHECK(emu_protected(e, 5099) && emu_protected(e, 5200));
	CHECK_EQ(wtrack_stats(wt, &st), 0);
	CHECK_EQ(st.commits, 3);
	CHECK_EQ(st.resolves, 2501);
	wtrack_close(wt);
	emu_destroy(e);
}

static void test_resolve_ranges(void)
{
	struct emu *e = emu_create(16, 0, 4096, 16);
	struct wtrack *wt = open_emu(e, 0);

	emu_protect(e, 0, 16);
	CHECK_EQ(wtrack_resolve(wt, page_gpa(2), 0), -EINVAL);
	CHECK_EQ(wtrack_resolve(wt, UINT64_MAX - 10, 100), -EINVAL);
	CHECK_EQ(wtrack_resolve(wt, UINT64_MAX - EMU_PAGE + 1, 1), -EINVAL);
	/* Two bytes across a page boundary: both pages. */
	CHECK_EQ(wtrack_resolve(wt, page_gpa(4) - 1, 2), 0);
	CHECK_EQ(wtrack_resolve(wt, page_gpa(8) + 100, 1), 0);
	CHECK_EQ(wtrack_commit(wt), 0);
	CHECK_EQ(e->bad_cmds, 0);
	CHECK(emu_protected(e, 2) && emu_protected(e, 5) && emu_protected(e, 9));
	CHECK(!emu_protected(e, 3) && !emu_protected(e, 4) && !emu_protected(e, 8));
	wtrack_close(wt);
	emu_destroy(e);
}

static uint64_t two_gpa(unsigned int v, unsigned int i)
{
	return page_gpa(2 * i + v);
}

static bool commit_held(struct emu *e)
{
	return e->held;
}

/* Writes page 0 once the COMMIT's completion is held back, then page 2. */
static void *late_vcpu(void *arg)
{
	struct vcpu *v = arg;

	if (!emu_wait_for(v->e, commit_held))
		v->ret = -ETIMEDOUT;
	for (unsigned int i = 0; i < 2 && !v->ret; i++)
		v->ret = emu_write(v->e, 0, page_gpa(2 * i));
	return NULL;
}

/*
 * A signal during the sleep: -EINTR, and the COMMIT_AND_FETCH stays in
 * flight, holding its resolve buffer while other batches come and go.
 * Its completion then arrives while wtrack_commit() waits for its
 * COMMIT's: neither is lost, no second FETCH is submitted, and once the
 * ring is empty again the next wait sleeps in a new one.
 */
static void test_eintr(void)
{
	struct emu *e = emu_create(16, 0, 4096, 16);
	struct wtrack *wt = open_emu(e, 0);
	struct vcpu v = { .e = e };
	struct kvm_wtrack_event ev[4];

	emu_protect(e, 0, 16);
	CHECK_EQ(wtrack_resolve(wt, page_gpa(12), EMU_PAGE), 0);
	e->intr_next = true;
	CHECK_EQ(wtrack_wait(wt, ev, 4), -EINTR);
	CHECK(e->fetch_waiting && !emu_protected(e, 12));
	CHECK_EQ(wtrack_resolve(wt, page_gpa(13), EMU_PAGE), 0);
	CHECK_EQ(wtrack_commit(wt), 0);
	CHECK(!emu_protected(e, 13));
	CHECK_EQ(wtrack_resolve(wt, page_gpa(14), EMU_PAGE), 0);
	CHECK_EQ(wtrack_resolve(wt, page_gpa(14) + 4, 4), 0);	/* already queued */
	e->hold_commit = true;
	pthread_create(&v.thread, NULL, late_vcpu, &v);
	CHECK_EQ(wtrack_commit(wt), 0);
	CHECK(!emu_protected(e, 14));
	CHECK(!e->held && !e->fetch_waiting);
	CHECK_EQ(wtrack_wait(wt, ev, 4), 1);
	CHECK_EQ(ev[0].gpa, page_gpa(0));
	CHECK_EQ(wtrack_resolve(wt, ev[0].gpa, ev[0].size), 0);
	CHECK_EQ(wtrack_wait(wt, ev, 4), 1);
	CHECK_EQ(ev[0].gpa, page_gpa(2));
	CHECK_EQ(ev[0].seq, 1);
	CHECK_EQ(wtrack_resolve(wt, ev[0].gpa, ev[0].size), 0);
	CHECK_EQ(wtrack_commit(wt), 0);
	pthread_join(v.thread, NULL);
	CHECK_EQ(v.ret, 0);
	CHECK_EQ(e->busy_fetches, 0);
	CHECK_EQ(e->buf_changed, 0);
	CHECK_EQ(e->bad_cmds, 0);
	CHECK_EQ(e->resolve_ranges, 5);
	wtrack_close(wt);
	emu_destroy(e);
}

/* A failed command is reported once; its resolves are dropped; the rest goes on. */
static void test_cmd_failure(void)
{
	struct emu *e = emu_create(16, 0, 4096, 16);
	struct wtrack *wt = open_emu(e, 0);
	struct kvm_wtrack_event ev[4];
	struct vcpu *v;

	emu_protect(e, 0, 16);
	v = start_vcpus(e, 1, 2, two_gpa);
	CHECK_EQ(wtrack_wait(wt, ev, 4), 1);
	CHECK_EQ(wtrack_resolve(wt, ev[0].gpa, ev[0].size), 0);
	e->fail_next = -ENOMEM;
	CHECK_EQ(wtrack_wait(wt, ev, 4), -ENOMEM);
	CHECK(emu_protected(e, 0));
	CHECK_EQ(wtrack_resolve(wt, page_gpa(0), EMU_PAGE), 0);
	CHECK_EQ(wtrack_wait(wt, ev, 4), 1);
	CHECK_EQ(ev[0].gpa, page_gpa(2));
	CHECK_EQ(wtrack_resolve(wt, ev[0].gpa, ev[0].size), 0);
	CHECK_EQ(wtrack_commit(wt), 0);
	join_vcpus(v, 1);
	CHECK_EQ(e->bad_cmds, 1);
	CHECK_EQ(e->busy_fetches, 0);
	wtrack_close(wt);
	emu_destroy(e);
}

/*
 * The io_uring transport, end to end on the host: a pipe has no uring_cmd,
 * so every command completes with EOPNOTSUPP, which must come back
 * through the CQE of the right command.
 */
static void test_uring_transport(void)
{
	for (unsigned int flags = 0; flags <= WTRACK_F_SQPOLL; flags += WTRACK_F_SQPOLL) {
		struct emu *e = emu_create(16, 0, 4096, 16);
		struct wtrack_params p = { .flags = flags }, q;
		struct kvm_wtrack_event ev[4];
		struct wtrack *wt = NULL;
		struct wtrack_stats st;
		void *priv = NULL;
		int pfd[2], ret;

		if (pipe(pfd))
			abort();
		ret = wt_uring_create(pfd[0], flags, &priv);
		if (ret) {
			tap_skipped = flags ? "no io_uring SQPOLL here" : "no io_uring here";
		} else {
			/* The command needs 128-byte SQEs (struct wt_uring starts
			 * with its struct io_uring). */
			CHECK(((struct io_uring *)priv)->flags & IORING_SETUP_SQE128);
			CHECK_EQ(wt_check_params(&p, &q), 0);
			CHECK_EQ(wt_ring_open(&q, e->ro_map, &wt_uring_transport, priv, &wt), 0);
			CHECK_EQ(wtrack_wait(wt, ev, 4), -EOPNOTSUPP);
			CHECK_EQ(wtrack_resolve(wt, page_gpa(1), EMU_PAGE), 0);
			CHECK_EQ(wtrack_commit(wt), -EOPNOTSUPP);
			CHECK_EQ(wtrack_commit(wt), 0);	/* the failed batch is gone */
			CHECK_EQ(wtrack_stats(wt, &st), 0);
			CHECK_EQ(st.fetches, 1);
			CHECK_EQ(st.commits, 1);
			wtrack_close(wt);
		}
		close(pfd[0]);
		close(pfd[1]);
		emu_destroy(e);
		if (ret)
			break;
	}
}

/* A report as KVM lays it out in kvm_run: four words from the exit union. */
static void craft_exit(struct kvm_run *run, __u32 reason, __u64 flags, __u64 gpa, __u64 size)
{
	const __u64 words[4] = { flags, gpa, size, 0 };

	_Static_assert(offsetof(struct kvm_run, hw) == 32, "kvm_run layout");
	memset(run, 0, sizeof(*run));
	run->exit_reason = reason;
	memcpy((char *)run + offsetof(struct kvm_run, hw), words, sizeof(words));
}

static void test_exit_event(void)
{
	const __u64 wt = KVM_MEMORY_EXIT_FLAG_WRITE_TRACK;
	const __u64 landed = KVM_WTRACK_EVENT_LANDED;
	struct kvm_wtrack_event ev;
	struct kvm_run run;

	/* A stopped write: EFAULT, memory_fault; the event's flags are 0. */
	craft_exit(&run, 39, wt, 0x12345, 0xcbb);
	memset(&ev, 0xff, sizeof(ev));
	CHECK_EQ(wtrack_exit_event(&run, 3, &ev), 1);
	CHECK_EQ(ev.gpa, 0x12345);
	CHECK_EQ(ev.size, 0xcbb);
	CHECK_EQ(ev.vcpu_id, 3);
	CHECK_EQ(ev.flags, 0);
	CHECK_EQ(ev.seq, 0);
	for (unsigned int i = 0; i < ARRAY_SIZE(ev.reserved); i++)
		CHECK_EQ(ev.reserved[i], 0);
	/* With upstream's bits set too (private), still ours, still 0. */
	craft_exit(&run, 39, wt | (1ULL << 3), 0x2000, 0x1000);
	CHECK_EQ(wtrack_exit_event(&run, 3, &ev), 1);
	CHECK_EQ(ev.flags, 0);
	/* A landed write: its own exit reason, kvm_run.wtrack_landed. */
	craft_exit(&run, KVM_EXIT_WTRACK_LANDED, landed, 0x7000, 0x1000);
	memset(&ev, 0xff, sizeof(ev));
	CHECK_EQ(wtrack_exit_event(&run, 0, &ev), 1);
	CHECK_EQ(ev.flags, landed);
	CHECK_EQ(ev.gpa, 0x7000);
	CHECK_EQ(ev.size, 0x1000);
	CHECK_EQ(ev.vcpu_id, 0);
	CHECK_EQ(ev.seq, 0);
	CHECK_EQ(ev.reserved[0], 0);
	/* A private/shared conversion request is not ours. */
	craft_exit(&run, 39, 1ULL << 3, 0x8000, 0x1000);
	memset(&ev, 0xab, sizeof(ev));
	CHECK_EQ(wtrack_exit_event(&run, 1, &ev), 0);
	CHECK_EQ(ev.gpa, 0xababababababababULL);
	/* Our old landed flags on a memory fault mean nothing now. */
	craft_exit(&run, 39, (1ULL << 33) | (1ULL << 34), 0x8000, 0x1000);
	CHECK_EQ(wtrack_exit_event(&run, 1, &ev), 0);
	craft_exit(&run, KVM_EXIT_IO, wt, 0x8000, 0x1000);
	CHECK_EQ(wtrack_exit_event(&run, 1, &ev), 0);
	craft_exit(&run, 1024, landed, 0x8000, 0x1000);	/* KVM_EXIT_VMWARE */
	CHECK_EQ(wtrack_exit_event(&run, 1, &ev), 0);
	CHECK_EQ(wtrack_exit_event(NULL, 1, &ev), -EINVAL);
	CHECK_EQ(wtrack_exit_event(&run, 1, NULL), -EINVAL);
}

static const struct tap_test tests[] = {
	{ "params", test_params },
	{ "open_no_kvm", test_open_no_kvm },
	{ "peek_empty", test_peek_empty },
	{ "basic", test_basic },
	{ "wrap", test_wrap },
	{ "full_ring", test_full_ring },
	{ "full_ring_busy_poll", test_full_ring_busy_poll },
	{ "full_ring_deferred", test_full_ring_deferred },
	{ "peek_commit", test_peek_commit },
	{ "event_stride", test_event_stride },
	{ "bad_layout", test_bad_layout },
	{ "ordering", test_ordering },
	{ "coalesce", test_coalesce },
	{ "landed", test_landed },
	{ "landed_releases", test_landed_releases },
	{ "bad_cmd", test_bad_cmd },
	{ "resolve_outside", test_resolve_outside },
	{ "resolve_split", test_resolve_split },
	{ "resolve_ranges", test_resolve_ranges },
	{ "eintr", test_eintr },
	{ "cmd_failure", test_cmd_failure },
	{ "uring_transport", test_uring_transport },
	{ "exit_event", test_exit_event },
};

int main(int argc, char **argv)
{
	return tap_main(tests, ARRAY_SIZE(tests), argc, argv);
}
