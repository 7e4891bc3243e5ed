// SPDX-License-Identifier: MIT
/*
 * The lazy snapshot engine.
 *
 * Every guest page has a state: untouched, being copied, copied.  Whoever
 * moves a page from untouched to being copied (a background copier, the
 * handler of a guest write, the VMM's write hook) copies it into the file
 * and marks it copied; whoever finds it being copied waits for that.  A
 * page is unprotected only by the one that copied it, after the copy, or
 * by the resolve of a write after the page is copied: so no write lands
 * on a page before its old contents are in the file.
 *
 * The pages KVM writes itself are reported only after they landed, so
 * they are copied during the pause and left unprotected: the pages its
 * vCPU state names (kvmclock, steal time, PV EOI, async #PF, Hyper-V
 * pages, the nested guest's VMCB/VMCS, TSS and GDT) and the guest's page
 * tables, whose accessed and dirty bits KVM sets under shadow paging.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <linux/kvm.h>
#include "internal.h"
#include "wtsnap.h"
#include "snapstate.h"

#define PAGE		((uint64_t)WTSNAP_PAGE_SIZE)
#define CHUNK_PAGES	512		/* what a copier takes at a time: 2 MiB */
#define RUN_PAGES	4		/* what it copies between report checks */
#define BATCH		64		/* events per ring peek */
#define AHEAD_PAGES	16		/* copied after a page the guest wrote */
#define NR_HINTS	64		/* written pages waiting for that */

enum { UNTOUCHED, COPYING, COPIED };

/* Counters of struct wtsnap_progress, updated atomically. */
enum { C_COPIER, C_WRITE, C_VMM, C_EAGER, C_EVENTS, C_LOST, NR_COUNTERS };

struct region {
	struct wtsnap_vm_region vm;
	uint64_t first;			/* index of its first page */
};

struct wtsnap {
	struct wtsnap_vm vm;
	struct wtsnap_params p;
	int *vcpu_fds;
	struct region *regions;		/* sorted by gpa */
	uint64_t nr_pages;
	struct wtrack *wt;		/* the kvm-wtrack backends' */
	int uffd;			/* WTSNAP_BACKEND_UFFD's, else -1 */
	bool uffd_registered;
	struct wts_caps caps;

	/* The running snapshot. */
	bool active;
	bool early;			/* protected, the vCPUs not paused yet */
	pthread_mutex_t fixup_lock;
	uint64_t *fixups;		/* pages whose protection the pause sets */
	size_t nr_fixups, fixups_cap;
	struct wtsnap_file *file;
	uint8_t *state;			/* per page: UNTOUCHED, COPYING, COPIED */
	uint64_t next_chunk;
	uint64_t copied;
	uint64_t copiers_ns;		/* when the copiers started */
	uint64_t counters[NR_COUNTERS];
	int error;
	uint64_t start_ns, pause_ns, end_ns;
	uint64_t state_ns, protect_ns;	/* parts of the pause */
	pthread_t *copiers;
	unsigned int nr_copiers;
	pthread_t consumer;
	bool consumer_running;
	pthread_mutex_t ring_lock;	/* drain_ring_locked()'s */
	pthread_mutex_t hint_lock;
	uint64_t hints[NR_HINTS];	/* pages the guest wrote: see hint() */
	unsigned int nr_hints;
	int stop_fd;			/* eventfd: the consumer's stop */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static void set_error(struct wtsnap *s, int err)
{
	int none = 0;

	__atomic_compare_exchange_n(&s->error, &none, err, false,
				    __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

static void count(struct wtsnap *s, int c, uint64_t n)
{
	__atomic_add_fetch(&s->counters[c], n, __ATOMIC_RELAXED);
}

static const struct region *find_region(const struct wtsnap *s, uint64_t gpa)
{
	for (unsigned int i = 0; i < s->vm.nr_regions; i++) {
		const struct region *r = &s->regions[i];

		if (gpa >= r->vm.gpa && gpa - r->vm.gpa < r->vm.size)
			return r;
	}
	return NULL;
}

static const struct region *index_region(const struct wtsnap *s, uint64_t idx)
{
	unsigned int i = s->vm.nr_regions - 1;

	while (s->regions[i].first > idx)
		i--;
	return &s->regions[i];
}

/* One past the index of the region's last page. */
static uint64_t region_end(const struct region *r)
{
	return r->first + r->vm.size / PAGE;
}

static uint64_t index_gpa(const struct region *r, uint64_t idx)
{
	return r->vm.gpa + (idx - r->first) * PAGE;
}

static uint64_t gpa_index(const struct region *r, uint64_t gpa)
{
	return r->first + (gpa - r->vm.gpa) / PAGE;
}

static void *index_hva(const struct region *r, uint64_t idx)
{
	return (char *)r->vm.hva + (idx - r->first) * PAGE;
}

static bool claim(struct wtsnap *s, uint64_t idx)
{
	uint8_t old = UNTOUCHED;

	return __atomic_compare_exchange_n(&s->state[idx], &old, COPYING, false,
					   __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}

/* Copy claimed pages [@idx, @idx + @n) of one region and publish them. */
static int copy_claimed(struct wtsnap *s, uint64_t idx, uint64_t n, int counter)
{
	const struct region *r = index_region(s, idx);
	int64_t ret;

	ret = wtsnap_file_write_pages(s->file, index_gpa(r, idx),
				      index_hva(r, idx), n);
	if (ret != (int64_t)n) {
		set_error(s, ret < 0 ? (int)ret : -EIO);
		return ret < 0 ? (int)ret : -EIO;
	}
	for (uint64_t i = idx; i < idx + n; i++)
		__atomic_store_n(&s->state[i], COPIED, __ATOMIC_RELEASE);
	__atomic_add_fetch(&s->copied, n, __ATOMIC_RELEASE);
	count(s, counter, n);
	return 0;
}

/*
 * Make sure page @idx is copied: copy it, or wait for whoever is copying
 * it (a copier's run of pages: a pwrite() of at most CHUNK_PAGES).
 */
static int copy_page(struct wtsnap *s, uint64_t idx, int counter)
{
	if (claim(s, idx))
		return copy_claimed(s, idx, 1, counter);
	while (__atomic_load_n(&s->state[idx], __ATOMIC_ACQUIRE) != COPIED) {
		int err = __atomic_load_n(&s->error, __ATOMIC_RELAXED);

		if (err)
			return err;
		sched_yield();
	}
	return 0;
}

/* Copy every page of [@gpa, @gpa + @size) that belongs to guest memory. */
static int copy_range(struct wtsnap *s, uint64_t gpa, uint64_t size, int counter)
{
	uint64_t end = gpa + size;
	int r = 0;

	for (gpa &= ~(PAGE - 1); gpa < end && !r; gpa += PAGE) {
		const struct region *reg = find_region(s, gpa);

		if (reg)
			r = copy_page(s, gpa_index(reg, gpa), counter);
	}
	return r;
}

/*
 * Guests write memory in neighbourhoods (a stack, a buffer, a working
 * set), so a page the guest waited for is a hint: the copiers copy the
 * pages after it next, and the guest's next writes there find them
 * copied instead of waiting too.  Every page is copied once either way;
 * a hint only changes the order.  Hints beyond NR_HINTS are dropped.
 */
static void hint(struct wtsnap *s, uint64_t idx)
{
	pthread_mutex_lock(&s->hint_lock);
	if (s->nr_hints < NR_HINTS)
		s->hints[s->nr_hints++] = idx;
	pthread_mutex_unlock(&s->hint_lock);
}

static bool take_hint(struct wtsnap *s, uint64_t *idx)
{
	bool got;

	if (!__atomic_load_n(&s->nr_hints, __ATOMIC_RELAXED))
		return false;
	pthread_mutex_lock(&s->hint_lock);
	got = s->nr_hints;
	if (got)
		*idx = s->hints[--s->nr_hints];
	pthread_mutex_unlock(&s->hint_lock);
	return got;
}

/* ---- Protection: kvm-wtrack or userfaultfd ---- */

static bool tracking(const struct wtsnap *s)
{
	return s->p.backend != WTSNAP_BACKEND_STOP;
}

/* Protect or unprotect pages [@idx, @idx + @n) of region @r. */
static int protect_run(struct wtsnap *s, const struct region *r, uint64_t idx,
		       uint64_t n, bool wp)
{
	if (s->uffd >= 0)
		return wts_uffd_wp(s->uffd, index_hva(r, idx), n * PAGE, wp);
	return (wp ? wtrack_protect : wtrack_unprotect)(s->wt, index_gpa(r, idx),
							 n * PAGE);
}

/*
 * userfaultfd registration lasts one snapshot, as in QEMU's background
 * snapshot: the memory is left as it was found.  wtsnap_open() registers
 * once, to refuse unsuitable memory early.
 */
static int uffd_register_all(struct wtsnap *s, bool reg)
{
	int r = 0;

	if (s->uffd < 0 || s->uffd_registered == reg)
		return 0;
	for (unsigned int i = 0; i < s->vm.nr_regions && !r; i++)
		r = (reg ? wts_uffd_register : wts_uffd_unregister)(s->uffd,
				s->regions[i].vm.hva, s->regions[i].vm.size);
	s->uffd_registered = reg && !r;
	return r;
}

/*
 * ---- Early protection (kvm-wtrack backends) ----
 *
 * Protecting all of guest memory costs time in proportion to its size,
 * so it is done before the pause, with the vCPUs running.  A write in
 * between is older than the snapshot: its page is unprotected with
 * nothing copied and noted, as are the pages the pause copies itself;
 * the pause then gives only the noted pages the protection their state
 * asks for.
 */

static bool protects_early(const struct wtsnap *s)
{
	return s->wt;
}

static int note_fixup(struct wtsnap *s, uint64_t idx)
{
	int r = 0;

	pthread_mutex_lock(&s->fixup_lock);
	if (s->nr_fixups == s->fixups_cap) {
		size_t cap = s->fixups_cap ? 2 * s->fixups_cap : 256;
		uint64_t *f = realloc(s->fixups, cap * sizeof(*f));

		if (f) {
			s->fixups = f;
			s->fixups_cap = cap;
		}
	}
	if (s->nr_fixups < s->fixups_cap)
		s->fixups[s->nr_fixups++] = idx;
	else
		r = -ENOMEM;
	pthread_mutex_unlock(&s->fixup_lock);
	return r;
}

/* Note the guest pages of [@gpa, @gpa + @size). */
static int note_fixups(struct wtsnap *s, uint64_t gpa, uint64_t size)
{
	uint64_t end = gpa + size;
	int r = 0;

	if (!protects_early(s))
		return 0;
	for (gpa &= ~(PAGE - 1); gpa < end && !r; gpa += PAGE) {
		const struct region *reg = find_region(s, gpa);

		if (reg)
			r = note_fixup(s, gpa_index(reg, gpa));
	}
	return r;
}

static int cmp_index(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Sort the noted pages and drop repeats; how many are left. */
static size_t sort_fixups(struct wtsnap *s)
{
	uint64_t *f = s->fixups;
	size_t n = 0;

	qsort(f, s->nr_fixups, sizeof(*f), cmp_index);
	for (size_t i = 0; i < s->nr_fixups; i++)
		if (!n || f[i] != f[n - 1])
			f[n++] = f[i];
	return n;
}

/* Whether page @idx must be protected when the vCPUs run again. */
static bool needs_protection(struct wtsnap *s, uint64_t idx)
{
	/* A page the VMM's hook is copying is protected until it is done. */
	return __atomic_load_n(&s->state[idx], __ATOMIC_ACQUIRE) != COPIED;
}

/*
 * With the vCPUs paused: protect again the noted pages not copied, and
 * unprotect the copied ones, in runs of neighbours that need the same.
 */
static int fix_protection(struct wtsnap *s)
{
	const uint64_t *f = s->fixups;
	size_t n = sort_fixups(s);

	for (size_t i = 0, j; i < n; i = j) {
		const struct region *r = index_region(s, f[i]);
		uint64_t end = region_end(r);
		bool wp = needs_protection(s, f[i]);
		int err;

		for (j = i + 1; j < n && f[j] == f[j - 1] + 1 && f[j] < end &&
		     needs_protection(s, f[j]) == wp; j++)
			;
		err = protect_run(s, r, f[i], j - i, wp);
		if (err)
			return err;
	}
	return 0;
}

/* ---- Guest writes ---- */

/* A write KVM made itself: reported after it landed, and not resolved. */
static bool event_landed(const struct kvm_wtrack_event *ev)
{
	return ev->flags & KVM_WTRACK_EVENT_LANDED;
}

/*
 * A write KVM made itself arrives after it landed, on a page that was
 * protected then: the page's contents at the snapshot are gone, even if
 * it was copied since, as KVM's write may have come before the copy.  The
 * pages KVM writes are copied in the pause and left unprotected, so this
 * is a write the snapshot did not plan for.
 */
static int handle_event(struct wtsnap *s, const struct kvm_wtrack_event *ev)
{
	const struct region *reg;
	int r;

	count(s, C_EVENTS, 1);
	/*
	 * Older than the snapshot: the write may land, and the pause protects
	 * its page again (one KVM wrote itself was unprotected by KVM).
	 */
	if (__atomic_load_n(&s->early, __ATOMIC_ACQUIRE))
		return note_fixups(s, ev->gpa, ev->size);
	if (event_landed(ev)) {
		count(s, C_LOST, 1);
		return -ESTALE;
	}
	r = copy_range(s, ev->gpa, ev->size, C_WRITE);
	reg = find_region(s, ev->gpa);
	if (!r && reg)
		hint(s, gpa_index(reg, ev->gpa));
	return r;
}

static int consume_batch(struct wtsnap *s)
{
	struct kvm_wtrack_event ev[BATCH];
	int n = wtrack_peek(s->wt, ev, BATCH);

	for (int i = 0; i < n; i++) {
		int err = handle_event(s, &ev[i]);

		if (err)
			set_error(s, err);
		/*
		 * Resolve even after an error: no vCPU may wait forever.  Not
		 * a landed write's page: KVM unprotected it, and nobody waits.
		 */
		err = event_landed(&ev[i]) ? 0 : wtrack_resolve(s->wt, ev[i].gpa, ev[i].size);
		if (err)
			set_error(s, err);
	}
	return n;
}

/* Ring mode: a batch of events, resolved; how many, or -errno. */
static int drain_ring(struct wtsnap *s)
{
	int n = consume_batch(s), err;

	if (n < 0 && n != -EINTR)
		set_error(s, n);
	err = wtrack_commit(s->wt);
	if (err && err != -EINTR)
		set_error(s, err);
	return n;
}

/* The ring has one consumer at a time: copiers only try (!@wait). */
static int drain_ring_locked(struct wtsnap *s, bool wait)
{
	int n;

	if (wait)
		pthread_mutex_lock(&s->ring_lock);
	else if (pthread_mutex_trylock(&s->ring_lock))
		return 0;
	n = drain_ring(s);
	pthread_mutex_unlock(&s->ring_lock);
	return n;
}

/* userfaultfd: copy the page, then unprotect it, which wakes the writer. */
static void handle_uffd_fault(struct wtsnap *s, uint64_t hva)
{
	const struct region *r = NULL;
	uint64_t idx;
	int err;

	for (unsigned int i = 0; i < s->vm.nr_regions && !r; i++)
		if (hva - (uintptr_t)s->regions[i].vm.hva < s->regions[i].vm.size)
			r = &s->regions[i];
	count(s, C_EVENTS, 1);
	if (!r) {
		set_error(s, -EFAULT);
		return;
	}
	idx = r->first + (hva - (uintptr_t)r->vm.hva) / PAGE;
	err = copy_page(s, idx, C_WRITE);
	if (err)
		set_error(s, err);
	else
		hint(s, idx);
	/* Even after an error: no vCPU may wait forever. */
	err = wts_uffd_wp(s->uffd, (void *)(uintptr_t)hva, PAGE, false);
	if (err)
		set_error(s, err);
}

static int drain_uffd(struct wtsnap *s)
{
	uint64_t hva[BATCH];
	int n = wts_uffd_read(s->uffd, hva, BATCH);

	if (n < 0)
		set_error(s, n);
	for (int i = 0; i < n; i++)
		handle_uffd_fault(s, hva[i]);
	return n;
}

/* Handle the backend's reports until the snapshot is complete and stopped. */
static void *consumer_main(void *arg)
{
	struct wtsnap *s = arg;
	bool uffd = s->uffd >= 0;
	struct pollfd pfd[2] = {
		{ .fd = uffd ? s->uffd : wtrack_ring_fd(s->wt), .events = POLLIN },
		{ .fd = s->stop_fd, .events = POLLIN },
	};

	for (;;) {
		if ((uffd ? drain_uffd(s) : drain_ring_locked(s, true)) > 0)
			continue;
		if (pfd[1].revents)
			break;
		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			set_error(s, -errno);
	}
	return NULL;
}

/*
 * Copiers serve the guest's pending writes between runs of pages: a
 * running thread answers a waiting vCPU sooner than a sleeping consumer
 * the scheduler must first wake, when the copiers keep the CPUs busy.
 */
static void serve_reports(struct wtsnap *s)
{
	if (s->uffd >= 0)
		drain_uffd(s);
	else if (s->p.backend == WTSNAP_BACKEND_RING)
		drain_ring_locked(s, false);
}

/* ---- Background copiers ---- */

/* Give back write access to pages [@idx, @idx + @n) of one region, copied. */
static void unprotect_copied(struct wtsnap *s, uint64_t idx, uint64_t n)
{
	int err;

	if (!n || !tracking(s))
		return;
	err = protect_run(s, index_region(s, idx), idx, n, false);
	if (err)
		set_error(s, err);
}

/*
 * Under max_bandwidth: whether what the copiers copied so far is ahead
 * of the limit's rate since they started, and until when.
 */
static bool over_limit(struct wtsnap *s, struct timespec *until)
{
	uint64_t copied, due;

	if (!s->p.max_bandwidth || !tracking(s))
		return false;
	copied = __atomic_load_n(&s->counters[C_COPIER], __ATOMIC_RELAXED) * PAGE;
	due = s->copiers_ns + (uint64_t)((double)copied * 1e9 / s->p.max_bandwidth);
	until->tv_sec = due / 1000000000;
	until->tv_nsec = due % 1000000000;
	return due > now_ns();
}

static void sleep_until(const struct timespec *t)
{
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, t, NULL) == EINTR)
		;
}

/*
 * Copy the untouched pages among the AHEAD_PAGES after page @idx, within
 * its region, and unprotect them as one run.
 */
static void copy_after(struct wtsnap *s, uint64_t idx)
{
	const struct region *r = index_region(s, idx);
	uint64_t end = region_end(r), first, n = 0;

	if (end > idx + 1 + AHEAD_PAGES)
		end = idx + 1 + AHEAD_PAGES;
	for (first = idx + 1; first < end && !claim(s, first); first++)
		;
	if (first < end)
		n = 1;
	while (first + n < end && claim(s, first + n))
		n++;
	if (n && !copy_claimed(s, first, n, C_COPIER))
		unprotect_copied(s, first, n);
}

/* Under max_bandwidth, as the copiers' other copies. */
static void serve_hints(struct wtsnap *s)
{
	struct timespec until;
	uint64_t idx;

	while (!over_limit(s, &until) && take_hint(s, &idx))
		copy_after(s, idx);
}

/*
 * Copy the untouched pages of [@idx, @end) a few at a time, serving the
 * guest's writes in between, and unprotect each unbroken run of them in
 * one call: changing a protection costs more than a copy, userfaultfd's
 * the most (KVM's mappings of the range are zapped).
 */
static void copy_span(struct wtsnap *s, uint64_t idx, uint64_t end)
{
	uint64_t done = idx, nr_done = 0;	/* copied, still protected */
	struct timespec until;

	while (idx < end && !__atomic_load_n(&s->error, __ATOMIC_RELAXED)) {
		const struct region *r = index_region(s, idx);
		uint64_t stop = region_end(r), n = 0;

		if (stop > end)
			stop = end;
		/* Claim nothing before a sleep: a write to it would wait. */
		if (over_limit(s, &until)) {
			unprotect_copied(s, done, nr_done);
			nr_done = 0;
			sleep_until(&until);
		}
		while (idx + n < stop && n < RUN_PAGES && claim(s, idx + n))
			n++;
		if (!n) {
			idx++;		/* someone else's: they copy it */
			continue;
		}
		if (copy_claimed(s, idx, n, C_COPIER))
			break;
		if (done + nr_done != idx || index_region(s, done) != r) {
			unprotect_copied(s, done, nr_done);
			done = idx;
			nr_done = 0;
		}
		nr_done += n;
		idx += n;
		serve_reports(s);
		serve_hints(s);
	}
	unprotect_copied(s, done, nr_done);
}

static void *copier_main(void *arg)
{
	struct wtsnap *s = arg;
	uint64_t nr_chunks = (s->nr_pages + CHUNK_PAGES - 1) / CHUNK_PAGES;
	uint64_t chunk;

	while ((chunk = __atomic_fetch_add(&s->next_chunk, 1, __ATOMIC_RELAXED)) <
	       nr_chunks) {
		uint64_t idx = chunk * CHUNK_PAGES;

		copy_span(s, idx, idx + CHUNK_PAGES < s->nr_pages ?
				  idx + CHUNK_PAGES : s->nr_pages);
	}
	return NULL;
}

WT_API int wtsnap_handle_exit(struct wtsnap *s, unsigned int vcpu,
			      struct kvm_run *run)
{
	struct kvm_wtrack_event ev;
	int r, err;

	if (!s || !run)
		return -EINVAL;
	r = wtrack_exit_event(run, vcpu, &ev);
	if (r <= 0 || !s->wt)
		return r;
	r = handle_event(s, &ev);
	if (r)
		set_error(s, r);
	err = event_landed(&ev) ? 0 : wtrack_resolve(s->wt, ev.gpa, ev.size);
	return r ?: err ?: 1;
}

WT_API int wtsnap_before_write(struct wtsnap *s, uint64_t gpa, uint64_t size)
{
	if (!s || !size || gpa + size < gpa)
		return -EINVAL;
	if (!__atomic_load_n(&s->active, __ATOMIC_ACQUIRE))
		return 0;
	return copy_range(s, gpa, size, C_VMM);
}

/* ---- Pages KVM writes itself ---- */

/* Copy the pages of [@gpa, @gpa + @size) now; the pause unprotects them. */
static int copy_eager(struct wtsnap *s, uint64_t gpa, uint64_t size)
{
	if (!size)
		return 0;
	return copy_range(s, gpa, size, C_EAGER) ?: note_fixups(s, gpa, size);
}

/* An MSR that holds a guest-physical address with an enable bit 0. */
static const struct {
	uint32_t index;
	uint64_t addr_mask;
	uint32_t size;
} addr_msrs[] = {
	{ 0x4b564d01, ~0x1ULL, 32 },		/* MSR_KVM_SYSTEM_TIME_NEW */
	{ 0x00000012, ~0x1ULL, 32 },		/* MSR_KVM_SYSTEM_TIME */
	{ 0x4b564d03, ~0x3fULL, 64 },		/* MSR_KVM_STEAL_TIME */
	{ 0x4b564d02, ~0x3fULL, 64 },		/* MSR_KVM_ASYNC_PF_EN */
	{ 0x4b564d04, ~0x1ULL, 4 },		/* MSR_KVM_PV_EOI_EN */
	{ 0x40000001, ~0xfffULL, 4096 },	/* HV_X64_MSR_HYPERCALL */
	{ 0x40000021, ~0xfffULL, 4096 },	/* HV_X64_MSR_REFERENCE_TSC */
	{ 0x40000073, ~0xfffULL, 4096 },	/* HV_X64_MSR_VP_ASSIST_PAGE */
	{ 0x40000082, ~0xfffULL, 4096 },	/* HV_X64_MSR_SIEFP */
	{ 0x40000083, ~0xfffULL, 4096 },	/* HV_X64_MSR_SIMP */
};

static int copy_msr_pages(struct wtsnap *s, const struct kvm_msrs *msrs)
{
	int r = 0;

	for (uint32_t i = 0; i < msrs->nmsrs && !r; i++) {
		const struct kvm_msr_entry *e = &msrs->entries[i];

		for (size_t j = 0; j < ARRAY_SIZE(addr_msrs) && !r; j++)
			if (e->index == addr_msrs[j].index && (e->data & 1))
				r = copy_eager(s, e->data & addr_msrs[j].addr_mask,
					       addr_msrs[j].size);
		/* MSR_KVM_WALL_CLOCK_NEW: no enable bit. */
		if (e->index == 0x4b564d00 && e->data)
			r = r ?: copy_eager(s, e->data, 12);
	}
	return r;
}

static int copy_nested_pages(struct wtsnap *s, const struct kvm_nested_state *ns)
{
	if (!ns || !(ns->flags & KVM_STATE_NESTED_GUEST_MODE))
		return 0;
	if (ns->format == KVM_STATE_NESTED_FORMAT_SVM)
		return copy_eager(s, ns->hdr.svm.vmcb_pa, PAGE);
	return copy_eager(s, ns->hdr.vmx.vmcs12_pa, PAGE);
}

#define PTE_PRESENT	(1ULL << 0)
#define PTE_LARGE	(1ULL << 7)
#define PTE_ADDR	0x000ffffffffff000ULL

/* A guest page table and, below it, the tables it points to. */
static int copy_table(struct wtsnap *s, uint64_t gpa, int level)
{
	const struct region *r = find_region(s, gpa);
	const uint64_t *pte;
	int err;

	if (!r)
		return 0;
	err = copy_eager(s, gpa, PAGE);
	if (err || level == 1)
		return err;
	pte = (const uint64_t *)((char *)r->vm.hva + (gpa - r->vm.gpa));
	for (int i = 0; i < 512 && !err; i++) {
		uint64_t e = pte[i];

		if ((e & PTE_PRESENT) && !(e & PTE_LARGE))
			err = copy_table(s, e & PTE_ADDR, level - 1);
	}
	return err;
}

/* 64-bit paging only; other modes' tables are reported as lost if hit. */
static int copy_page_tables(struct wtsnap *s, const struct kvm_sregs *sregs)
{
	bool la57 = sregs->cr4 & (1ULL << 12);

	if (!(sregs->cr0 & (1ULL << 31)) || !(sregs->efer & (1ULL << 10)))
		return 0;
	return copy_table(s, sregs->cr3 & PTE_ADDR, la57 ? 5 : 4);
}

static int copy_vcpu_pages(struct wtsnap *s, const struct wts_vcpu_state *st)
{
	const struct kvm_sregs *sr = &st->sregs;
	int r;

	r = copy_msr_pages(s, st->msrs);
	r = r ?: copy_nested_pages(s, st->nested);
	/* A task switch KVM emulates writes the TSS and the GDT. */
	r = r ?: copy_eager(s, sr->tr.base, sr->tr.limit + 1ULL);
	r = r ?: copy_eager(s, sr->gdt.base, sr->gdt.limit + 1ULL);
	return r ?: copy_page_tables(s, sr);
}

/* ---- Start and finish ---- */

static int save_state(struct wtsnap *s)
{
	int r = 0;

	for (unsigned int i = 0; i < s->vm.nr_vcpus && !r; i++) {
		struct wts_vcpu_state st;

		r = wts_save_vcpu(s->file, i, s->vcpu_fds[i], &s->caps, &st);
		if (r)
			break;
		r = copy_vcpu_pages(s, &st);
		wts_vcpu_state_free(&st);
	}
	for (unsigned int i = 0; i < s->p.nr_eager && !r; i++)
		r = copy_eager(s, s->p.eager[i].gpa, s->p.eager[i].size);
	return r ?: wts_save_vm(s->file, s->vm.vm_fd);
}

/* Protect every page not copied yet, in runs between the copied ones. */
static int protect_rest(struct wtsnap *s)
{
	for (unsigned int i = 0; i < s->vm.nr_regions; i++) {
		const struct region *r = &s->regions[i];
		uint64_t end = region_end(r);

		for (uint64_t idx = r->first; idx < end; ) {
			uint64_t n = 0;
			int err;

			while (idx + n < end && s->state[idx + n] == UNTOUCHED)
				n++;
			if (!n) {
				idx++;
				continue;
			}
			err = protect_run(s, r, idx, n, true);
			if (err)
				return err;
			idx += n;
		}
	}
	return 0;
}

static void unprotect_all(struct wtsnap *s)
{
	for (unsigned int i = 0; i < s->vm.nr_regions; i++) {
		const struct region *r = &s->regions[i];

		protect_run(s, r, r->first, r->vm.size / PAGE, false);
	}
}

static int start_consumer(struct wtsnap *s)
{
	int r;

	if (s->consumer_running || (s->p.backend != WTSNAP_BACKEND_RING &&
				    s->p.backend != WTSNAP_BACKEND_UFFD))
		return 0;
	r = -pthread_create(&s->consumer, NULL, consumer_main, s);
	s->consumer_running = !r;
	return r;
}

static int start_threads(struct wtsnap *s)
{
	int r;

	s->copiers_ns = now_ns();
	r = start_consumer(s);
	if (r)
		return r;
	for (; s->nr_copiers < s->p.copiers; s->nr_copiers++) {
		r = -pthread_create(&s->copiers[s->nr_copiers], NULL, copier_main, s);
		if (r)
			return r;
	}
	return 0;
}

static void stop_consumer(struct wtsnap *s)
{
	uint64_t one = 1;

	if (!s->consumer_running)
		return;
	if (write(s->stop_fd, &one, sizeof(one)) != sizeof(one))
		set_error(s, -errno);
	pthread_join(s->consumer, NULL);
	s->consumer_running = false;
	eventfd_read(s->stop_fd, &one);
}

/* Join the copiers; with none left (a failed start), copy here. */
static void wait_copied(struct wtsnap *s)
{
	for (unsigned int i = 0; i < s->nr_copiers; i++)
		pthread_join(s->copiers[i], NULL);
	if (!s->nr_copiers)
		copier_main(s);
	s->nr_copiers = 0;
	/* Writes in flight finish their copies. */
	while (__atomic_load_n(&s->copied, __ATOMIC_ACQUIRE) < s->nr_pages &&
	       !__atomic_load_n(&s->error, __ATOMIC_RELAXED))
		sched_yield();
}

static int begin(struct wtsnap *s, int fd)
{
	struct wtsnap_region *fr = calloc(s->vm.nr_regions, sizeof(*fr));
	int r;

	if (!fr)
		return -ENOMEM;
	for (unsigned int i = 0; i < s->vm.nr_regions; i++)
		fr[i] = (struct wtsnap_region) {
			.gpa = s->regions[i].vm.gpa, .size = s->regions[i].vm.size,
			.slot = s->regions[i].vm.slot, .flags = s->regions[i].vm.flags,
		};
	r = wtsnap_file_create(fd, fr, s->vm.nr_regions, s->vm.nr_vcpus, &s->file);
	free(fr);
	if (r)
		return r;
	memset(s->state, UNTOUCHED, s->nr_pages);
	memset(s->counters, 0, sizeof(s->counters));
	s->next_chunk = s->copied = 0;
	s->nr_fixups = s->nr_hints = 0;
	s->error = 0;
	s->end_ns = s->state_ns = s->protect_ns = s->pause_ns = 0;
	return 0;
}

/* Leave nothing protected after a failed start. */
static void undo_protection(struct wtsnap *s)
{
	if (protects_early(s) || s->uffd_registered)
		unprotect_all(s);
	uffd_register_all(s, false);
	__atomic_store_n(&s->early, false, __ATOMIC_RELEASE);
}

/* Protect all guest memory, the vCPUs running; the consumer serves them. */
static int protect_early(struct wtsnap *s)
{
	int r;

	if (!protects_early(s))
		return 0;
	__atomic_store_n(&s->early, true, __ATOMIC_RELEASE);
	r = start_consumer(s);
	for (unsigned int i = 0; i < s->vm.nr_regions && !r; i++)
		r = protect_run(s, &s->regions[i], s->regions[i].first,
				s->regions[i].vm.size / PAGE, true);
	if (r)
		undo_protection(s);
	return r;
}

/*
 * The vCPUs are paused: the ring's events left from before are the last
 * early ones.  Under the ring's lock, so that no drain sees the switch
 * halfway through.
 */
static void end_early(struct wtsnap *s)
{
	bool ring = s->p.backend == WTSNAP_BACKEND_RING;

	if (ring) {
		pthread_mutex_lock(&s->ring_lock);
		while (drain_ring(s) > 0)
			;
	}
	__atomic_store_n(&s->early, false, __ATOMIC_RELEASE);
	if (ring)
		pthread_mutex_unlock(&s->ring_lock);
}

/* With the vCPUs paused: state, KVM's pages, then the protection. */
static int paused_work(struct wtsnap *s)
{
	uint64_t t0;
	int r;

	/* From here on, the VMM's writes are copied first, pause included. */
	__atomic_store_n(&s->active, true, __ATOMIC_RELEASE);
	t0 = now_ns();
	end_early(s);
	s->protect_ns = now_ns() - t0;
	t0 = now_ns();
	r = save_state(s);
	s->state_ns = now_ns() - t0;
	if (r || !tracking(s)) {
		if (!r)
			copier_main(s);		/* stop-the-world */
		return r ?: s->error;
	}
	t0 = now_ns();
	if (protects_early(s))
		r = fix_protection(s);
	else
		r = uffd_register_all(s, true) ?: protect_rest(s);
	s->protect_ns += now_ns() - t0;
	return r ?: s->error;
}

/*
 * Take the snapshot's instant: pause, save, protect, start the copiers,
 * resume.  A failure leaves nothing protected for the vCPUs to wait on.
 */
static int pause_and_start(struct wtsnap *s)
{
	uint64_t t0 = now_ns();
	int r = s->vm.pause(s->vm.opaque);

	if (r) {
		undo_protection(s);
		return r;
	}
	r = paused_work(s);
	/* Copiers and the consumer run before any vCPU does. */
	r = r ?: start_threads(s);
	if (r)
		undo_protection(s);
	s->pause_ns = now_ns() - t0;
	s->vm.resume(s->vm.opaque);
	return r;
}

/* The rest of a failed start, the vCPUs running. */
static void abort_start(struct wtsnap *s)
{
	__atomic_store_n(&s->active, false, __ATOMIC_RELEASE);
	stop_consumer(s);
	for (unsigned int i = 0; i < s->nr_copiers; i++)
		pthread_join(s->copiers[i], NULL);
	s->nr_copiers = 0;
	wtsnap_file_close(s->file);
	s->file = NULL;
}

WT_API int wtsnap_start(struct wtsnap *s, int fd)
{
	int r;

	if (!s)
		return -EINVAL;
	if (s->active)
		return -EBUSY;
	r = begin(s, fd);
	if (r)
		return r;
	s->start_ns = now_ns();
	r = protect_early(s) ?: pause_and_start(s);
	if (r)
		abort_start(s);
	return r;
}

WT_API int wtsnap_progress(struct wtsnap *s, struct wtsnap_progress *p)
{
	if (!s || !p)
		return -EINVAL;
	memset(p, 0, sizeof(*p));
	p->nr_pages = s->nr_pages;
	p->copied = __atomic_load_n(&s->copied, __ATOMIC_ACQUIRE);
	p->by_copier = __atomic_load_n(&s->counters[C_COPIER], __ATOMIC_RELAXED);
	p->by_write = __atomic_load_n(&s->counters[C_WRITE], __ATOMIC_RELAXED);
	p->by_vmm = __atomic_load_n(&s->counters[C_VMM], __ATOMIC_RELAXED);
	p->eager = __atomic_load_n(&s->counters[C_EAGER], __ATOMIC_RELAXED);
	p->events = __atomic_load_n(&s->counters[C_EVENTS], __ATOMIC_RELAXED);
	p->lost = __atomic_load_n(&s->counters[C_LOST], __ATOMIC_RELAXED);
	p->pause_ns = s->pause_ns;
	p->state_ns = s->state_ns;
	p->protect_ns = s->protect_ns;
	p->elapsed_ns = (s->end_ns ?: now_ns()) - s->start_ns;
	p->done = p->copied == p->nr_pages;
	p->error = __atomic_load_n(&s->error, __ATOMIC_RELAXED);
	return 0;
}

/*
 * Wait for the copy, then end every protection left (after a failed copy,
 * pages never copied) so that no vCPU waits for a consumer that is gone.
 */
static void stop(struct wtsnap *s)
{
	if (s->active)
		wait_copied(s);
	if (tracking(s))
		unprotect_all(s);
	stop_consumer(s);
	uffd_register_all(s, false);
	__atomic_store_n(&s->active, false, __ATOMIC_RELEASE);
	s->end_ns = now_ns();
}

WT_API int wtsnap_finish(struct wtsnap *s, struct wtsnap_progress *summary)
{
	int r;

	if (!s)
		return -EINVAL;
	if (!s->file)
		return -ENOENT;
	stop(s);
	r = s->error;
	if (!r)
		r = wtsnap_file_finish(s->file, 0);
	wtsnap_file_close(s->file);
	s->file = NULL;
	if (summary)
		wtsnap_progress(s, summary);
	return r;
}

/* ---- Setup ---- */

static int cmp_region(const void *a, const void *b)
{
	const struct region *x = a, *y = b;

	return x->vm.gpa < y->vm.gpa ? -1 : x->vm.gpa > y->vm.gpa;
}

static int copy_vm(struct wtsnap *s, const struct wtsnap_vm *vm)
{
	s->vm = *vm;
	s->vcpu_fds = calloc(vm->nr_vcpus, sizeof(int));
	s->regions = calloc(vm->nr_regions, sizeof(*s->regions));
	if (!s->vcpu_fds || !s->regions)
		return -ENOMEM;
	memcpy(s->vcpu_fds, vm->vcpu_fds, vm->nr_vcpus * sizeof(int));
	s->vm.vcpu_fds = s->vcpu_fds;
	for (unsigned int i = 0; i < vm->nr_regions; i++) {
		const struct wtsnap_vm_region *r = &vm->regions[i];

		if (!r->hva || !r->size || (r->gpa | r->size) % PAGE)
			return -EINVAL;
		s->regions[i].vm = *r;
	}
	qsort(s->regions, vm->nr_regions, sizeof(*s->regions), cmp_region);
	for (unsigned int i = 0; i < vm->nr_regions; i++) {
		s->regions[i].first = s->nr_pages;
		s->nr_pages += s->regions[i].vm.size / PAGE;
	}
	return 0;
}

static int check_params(const struct wtsnap_params *p)
{
	for (size_t i = 0; i < ARRAY_SIZE(p->resv); i++)
		if (p->resv[i])
			return -EINVAL;
	if (p->backend > WTSNAP_BACKEND_UFFD || p->copiers > WTSNAP_MAX_COPIERS ||
	    (p->nr_eager && !p->eager))
		return -EINVAL;
	return 0;
}

static int open_uffd(struct wtsnap *s)
{
	s->uffd = wts_uffd_open();
	if (s->uffd < 0)
		return s->uffd;
	return uffd_register_all(s, true) ?: uffd_register_all(s, false);
}

static int open_tracking(struct wtsnap *s)
{
	struct wtrack_params wp = {
		.mode = s->p.backend == WTSNAP_BACKEND_EXIT ? WTRACK_MODE_EXIT :
							     WTRACK_MODE_RING,
		.ring_entries = s->p.ring_entries,
	};

	if (s->p.backend == WTSNAP_BACKEND_STOP)
		return 0;
	if (s->p.backend == WTSNAP_BACKEND_UFFD)
		return open_uffd(s);
	return wtrack_open(s->vm.vm_fd, &wp, &s->wt);
}

static int setup(struct wtsnap *s, const struct wtsnap_vm *vm,
		 const struct wtsnap_params *p)
{
	int r;

	if (p)
		s->p = *p;
	if (!s->p.copiers)
		s->p.copiers = 1;
	r = check_params(&s->p);
	r = r ?: copy_vm(s, vm);
	if (r)
		return r;
	if (s->p.nr_eager) {
		struct wtsnap_range *e = calloc(s->p.nr_eager, sizeof(*e));

		if (!e)
			return -ENOMEM;
		memcpy(e, p->eager, s->p.nr_eager * sizeof(*e));
		s->p.eager = e;
	}
	s->state = malloc(s->nr_pages);
	s->copiers = calloc(s->p.copiers, sizeof(*s->copiers));
	s->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (!s->state || !s->copiers || s->stop_fd < 0)
		return s->stop_fd < 0 ? -errno : -ENOMEM;
	r = wts_caps_init(&s->caps, s->vm.vm_fd);
	return r ?: open_tracking(s);
}

WT_API int wtsnap_open(const struct wtsnap_vm *vm, const struct wtsnap_params *p,
		       struct wtsnap **out)
{
	struct wtsnap *s;
	int r;

	if (!vm || !out || !vm->nr_vcpus || !vm->vcpu_fds || !vm->nr_regions ||
	    !vm->regions || !vm->pause || !vm->resume)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->stop_fd = s->uffd = -1;
	pthread_mutex_init(&s->ring_lock, NULL);
	pthread_mutex_init(&s->fixup_lock, NULL);
	pthread_mutex_init(&s->hint_lock, NULL);
	r = setup(s, vm, p);
	if (r) {
		wtsnap_close(s);
		return r;
	}
	*out = s;
	return 0;
}

WT_API void wtsnap_close(struct wtsnap *s)
{
	if (!s)
		return;
	if (s->file) {
		stop(s);
		wtsnap_file_close(s->file);	/* unfinished: never restored */
	}
	wtrack_close(s->wt);
	if (s->uffd >= 0)
		close(s->uffd);
	wts_caps_free(&s->caps);
	if (s->stop_fd >= 0)
		close(s->stop_fd);
	free((void *)s->p.eager);
	free(s->copiers);
	free(s->state);
	free(s->regions);
	free(s->vcpu_fds);
	pthread_mutex_destroy(&s->ring_lock);
	pthread_mutex_destroy(&s->fixup_lock);
	pthread_mutex_destroy(&s->hint_lock);
	free(s->fixups);
	free(s);
}
