// SPDX-License-Identifier: GPL-2.0
/*
 * Faults injected around ring mode, each under examples/snapvm.c's guest:
 * vCPUs that write their pages as fast as they can and check, now and
 * then, that every page holds what they last wrote and that the pages add
 * up to their count of writes.  A write lost, torn or landed twice fails
 * the guest's check; a vCPU left waiting hangs the check (the test's
 * timeout); the kernel log is checked by the runner.
 *
 * - protect/unprotect of random ranges racing with the vCPUs' faults and
 *   the consumer's resolves, for a bounded time (WTRACK_STRESS_SECONDS):
 *   in the data, and in the code, stacks and page tables; no fault may be
 *   emulated;
 * - the consumer, a separate process holding the only ring fd, killed
 *   while vCPUs wait: every page is released and nobody waits;
 * - a memslot's flags changed (dirty logging on) and a move refused while
 *   its pages are protected and vCPUs wait on them: the waits and the
 *   protections carry on until the resolve;
 * - many vCPUs incrementing counters in one page that is protected again
 *   and again: every increment lands exactly once (the guest checks).
 */
#include <pthread.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <liburing.h>

#include "kvm_util.h"
#include "processor.h"
#include "kselftest_harness.h"
#include "snapvm.h"
#include "wtrack_util.h"
#include <wtrack.h>

#define MEM_MIB		16
#define NR_VCPUS	4
#define STRESS_SECONDS	8
#define MAX_EVENTS	64

FIXTURE(fault) {
	struct snapvm *vm;
	struct wtsnap_vm desc;
	struct wtsnap_vm_region regions[SNAPVM_MAX_REGIONS];
	const struct wtsnap_vm_region *data;	/* the pages the guest writes */
	int stats_fds[NR_VCPUS];	/* opened before KVM_RUN holds vcpu->mutex */
};

/* The data: by far the largest memslot (the others: code, device). */
static const struct wtsnap_vm_region *largest(const struct wtsnap_vm *vm)
{
	const struct wtsnap_vm_region *r = &vm->regions[0];

	for (unsigned int i = 1; i < vm->nr_regions; i++)
		if (vm->regions[i].size > r->size)
			r = &vm->regions[i];
	return r;
}

FIXTURE_SETUP(fault)
{
	struct snapvm_config cfg = { .nr_vcpus = NR_VCPUS, .mem_mib = MEM_MIB };

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_X86_WRITE_TRACK) & KVM_WTRACK_ENABLE_RING);
	self->vm = snapvm_create(&cfg);
	snapvm_describe(self->vm, &self->desc, self->regions);
	self->data = largest(&self->desc);
	for (unsigned int i = 0; i < NR_VCPUS; i++) {
		self->stats_fds[i] = ioctl(snapvm_vcpu_fd(self->vm, i), KVM_GET_STATS_FD, NULL);
		ASSERT_LE(0, self->stats_fds[i]);
	}
	snapvm_start(self->vm);
	snapvm_wait_checks(self->vm, 1);
}

FIXTURE_TEARDOWN(fault)
{
	for (unsigned int i = 0; i < NR_VCPUS; i++)
		close(self->stats_fds[i]);
	snapvm_free(self->vm);
}

/* The guest made no write for 300 ms. */
static bool guest_stopped(struct snapvm *vm)
{
	uint64_t writes = snapvm_writes(vm);

	usleep(300 * 1000);
	return writes == snapvm_writes(vm);
}

/* A random run of 1 to 64 pages of @r. */
static void random_range(const struct wtsnap_vm_region *r, unsigned int *seed,
			 uint64_t *gpa, uint64_t *size)
{
	uint64_t pages = r->size / PAGE_SIZE;
	uint64_t n = 1 + rand_r(seed) % (pages < 64 ? pages : 64);
	uint64_t first = rand_r(seed) % (pages - n + 1);

	*gpa = r->gpa + first * PAGE_SIZE;
	*size = n * PAGE_SIZE;
}

struct consumer {
	struct wtrack *wt;
	pthread_t thread;
	volatile bool stop;
	uint64_t events;
};

static void noop(int sig)
{
}

/* Resolve every event, until told to stop (SIGUSR2 ends the wait). */
static void *consume(void *arg)
{
	struct consumer *c = arg;
	struct kvm_wtrack_event ev[MAX_EVENTS];

	while (!c->stop) {
		int n = wtrack_wait(c->wt, ev, MAX_EVENTS);

		if (n == -EINTR)
			continue;
		TEST_ASSERT(n > 0, "wtrack_wait: %d", n);
		for (int i = 0; i < n; i++)
			TEST_ASSERT(!wtrack_resolve(c->wt, ev[i].gpa, ev[i].size),
				    "wtrack_resolve");
		c->events += n;
	}
	return NULL;
}

/* A signal ends its wait: until it has seen the flag, keep sending it. */
static void consumer_stop(struct consumer *c)
{
	c->stop = true;
	do
		pthread_kill(c->thread, SIGUSR2);
	while (pthread_tryjoin_np(c->thread, NULL) && !usleep(1000));
}

/* Page faults KVM answered by emulating the instruction, all vCPUs. */
static uint64_t emulated_faults(FIXTURE_DATA(fault) *self)
{
	uint64_t sum = 0;

	for (unsigned int i = 0; i < NR_VCPUS; i++)
		sum += wtrack_fd_stat(self->stats_fds[i], "pf_emulate");
	return sum;
}

/* WTRACK_STRESS_SECONDS overrides the stress period (to hunt a rare race). */
static int stress_seconds(void)
{
	const char *env = getenv("WTRACK_STRESS_SECONDS");

	return env ? atoi(env) : STRESS_SECONDS;
}

/*
 * For a bounded time, random ranges of @r are protected and unprotected
 * while four vCPUs fault on them and a consumer resolves their events.
 * Then everything is unprotected and the guest must find its memory
 * intact.  With TDP no fault may be emulated: the guest does no MMIO, and
 * a write that faulted on a page unprotected since must simply fault again
 * (emulating it after an NPF in the guest's page walk once wrote the data
 * into the page table, and every vCPU triple faulted).  Shadow paging
 * emulates such a write, correctly: it translates the data's address.
 * @events: the events resolved.
 */
static void protect_unprotect_race(struct __test_metadata *_metadata,
				   FIXTURE_DATA(fault) *self,
				   const struct wtsnap_vm_region *r, uint64_t *events)
{
	struct consumer c = { 0 };
	unsigned int seed = 1;
	uint64_t gpa, size, ops = 0, writes = snapvm_writes(self->vm);
	uint64_t emulated = emulated_faults(self);
	int seconds = stress_seconds();
	time_t end = time(NULL) + seconds;

	sigaction(SIGUSR2, &(struct sigaction){ .sa_handler = noop }, NULL);
	ASSERT_EQ(0, wtrack_open(self->desc.vm_fd, NULL, &c.wt));
	pthread_create(&c.thread, NULL, consume, &c);

	while (time(NULL) < end) {
		random_range(r, &seed, &gpa, &size);
		ASSERT_EQ(0, wtrack_protect(c.wt, gpa, size));
		random_range(r, &seed, &gpa, &size);
		ASSERT_EQ(0, wtrack_unprotect(c.wt, gpa, size));
		ops += 2;
	}
	ASSERT_EQ(0, wtrack_unprotect(c.wt, r->gpa, r->size));
	consumer_stop(&c);
	wtrack_close(c.wt);

	snapvm_wait_checks(self->vm, 2);
	emulated = emulated_faults(self) - emulated;
	TH_LOG("%lu protects and unprotects in %d s, %lu events resolved, %lu guest writes, %lu faults emulated",
	       ops, seconds, c.events, snapvm_writes(self->vm) - writes, emulated);
	*events = c.events;
	if (kvm_is_tdp_enabled())
		ASSERT_EQ(0, emulated);
}

TEST_F_TIMEOUT(fault, protect_unprotect_race, 120)
{
	uint64_t events = 0;

	protect_unprotect_race(_metadata, self, self->data, &events);
	ASSERT_LT(0, events);
}

/*
 * The same on the memslot at GPA 0, which holds the guest's code, stacks,
 * descriptor tables and page tables: with TDP, writes there come from the
 * CPU's page walk (accessed and dirty bits).  Under shadow paging KVM's
 * own walk sets those, and this guest writes nothing else there, so there
 * may be no event at all.
 */
TEST_F_TIMEOUT(fault, protect_unprotect_race_on_guest_tables, 120)
{
	const struct wtsnap_vm_region *r = NULL;
	uint64_t events = 0;

	for (unsigned int i = 0; i < self->desc.nr_regions; i++)
		if (self->regions[i].gpa == 0)
			r = &self->regions[i];
	ASSERT_NE(NULL, r);
	protect_unprotect_race(_metadata, self, r, &events);
	if (kvm_is_tdp_enabled())
		ASSERT_LT(0, events);
}

/*
 * A consumer in another process: resolves with io_uring COMMITs what it
 * read(), up to @limit events, then stops resolving (and waits to be
 * killed).  Exits only on error.
 */
static void child_consumer(int ring_fd, unsigned int limit)
{
	struct kvm_wtrack_event ev[MAX_EVENTS];
	struct kvm_wtrack_resolve res[MAX_EVENTS];
	struct kvm_wtrack_ring_cmd cmd = { 0 };
	struct io_uring_params p = { .flags = IORING_SETUP_SQE128 };
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	struct io_uring uring;
	unsigned int done = 0;
	uint32_t nr;

	/* The command needs 128-byte SQEs. */
	if (io_uring_queue_init_params(4, &uring, &p))
		_exit(1);
	while (done < limit) {
		ssize_t n = read(ring_fd, ev, sizeof(ev));

		if (n <= 0)
			_exit(2);
		n /= sizeof(ev[0]);
		/* A landed write's page is unprotected already: not resolved. */
		nr = 0;
		for (ssize_t i = 0; i < n; i++)
			if (!(ev[i].flags & KVM_WTRACK_EVENT_LANDED))
				res[nr++] = (struct kvm_wtrack_resolve){
					.gpa = ev[i].gpa & ~(PAGE_SIZE - 1),
					.size = PAGE_SIZE,
				};
		done += n;
		cmd.head = done;
		cmd.nr_resolve = nr;
		cmd.resolve_addr = nr ? (uintptr_t)res : 0;
		sqe = io_uring_get_sqe(&uring);
		io_uring_prep_rw(IORING_OP_URING_CMD, sqe, ring_fd, NULL, 0, 0);
		sqe->cmd_op = KVM_WTRACK_RING_COMMIT;
		memcpy(sqe->cmd, &cmd, sizeof(cmd));
		if (io_uring_submit(&uring) != 1 || io_uring_wait_cqe(&uring, &cqe) ||
		    cqe->res)
			_exit(3);
		io_uring_cqe_seen(&uring, cqe);
	}
	for (;;)
		pause();
}

static int enable_ring(int vm_fd)
{
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_X86_WRITE_TRACK,
		.args = { KVM_WTRACK_ENABLE_RING, 256 },
	};

	return ioctl(vm_fd, KVM_ENABLE_CAP, &cap);
}

static int wtrack_ioctl(int vm_fd, unsigned long cmd, uint64_t gpa, uint64_t size)
{
	struct kvm_wtrack_range range = { .gpa = gpa, .size = size };

	return ioctl(vm_fd, cmd, &range) ? -errno : 0;
}

/*
 * The consumer resolves a while, then stops resolving with every page
 * protected again and vCPUs waiting, and is killed: its ring goes, every
 * page with it, and the vCPUs go on.  Protecting needs a consumer again.
 */
TEST_F_TIMEOUT(fault, consumer_killed_while_vcpus_wait, 120)
{
	int vm_fd = self->desc.vm_fd, ring_fd, status;
	uint64_t writes;
	pid_t pid;

	ASSERT_EQ(0, enable_ring(vm_fd));
	ring_fd = ioctl(vm_fd, KVM_WTRACK_RING_FD, NULL);
	ASSERT_LE(0, ring_fd);
	ASSERT_EQ(0, wtrack_ioctl(vm_fd, KVM_WTRACK_PROTECT, self->data->gpa,
				  self->data->size));
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid)
		child_consumer(ring_fd, 20);
	close(ring_fd);

	/* It resolves for a while, then no more: every vCPU waits. */
	usleep(1000 * 1000);
	ASSERT_EQ(0, wtrack_ioctl(vm_fd, KVM_WTRACK_PROTECT, self->data->gpa,
				  self->data->size));
	usleep(200 * 1000);
	ASSERT_EQ(0, waitpid(pid, &status, WNOHANG))
		TH_LOG("the consumer exited early: %d", WEXITSTATUS(status));
	ASSERT_TRUE(guest_stopped(self->vm)) TH_LOG("vCPUs still write");
	writes = snapvm_writes(self->vm);

	kill(pid, SIGKILL);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	snapvm_wait_checks(self->vm, 2);
	TH_LOG("guest writes: %lu while the consumer lived, %lu after",
	       writes, snapvm_writes(self->vm) - writes);
	ASSERT_EQ(-ENOTCONN, wtrack_ioctl(vm_fd, KVM_WTRACK_PROTECT, self->data->gpa,
					  PAGE_SIZE));
}

/* The events posted since the last call (a non-blocking read()). */
static int read_events(int ring_fd)
{
	struct kvm_wtrack_event ev[MAX_EVENTS];
	ssize_t n = read(ring_fd, ev, sizeof(ev));

	return n < 0 ? 0 : n / sizeof(ev[0]);
}

static int set_region(int vm_fd, const struct wtsnap_vm_region *r, uint64_t gpa,
		      uint32_t flags)
{
	struct kvm_userspace_memory_region region = {
		.slot = r->slot,
		.flags = flags,
		.guest_phys_addr = gpa,
		.memory_size = r->size,
		.userspace_addr = (uintptr_t)r->hva,
	};

	return ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &region) ? -errno : 0;
}

/*
 * Every page protected, events read but not resolved: the vCPUs wait
 * (vCPUs on one page share an event).  Dirty logging turned on and a move
 * refused change nothing: the guest stays stopped.  After the resolve it
 * runs on with its memory intact.
 */
TEST_F_TIMEOUT(fault, memslot_changes_while_vcpus_wait, 120)
{
	int vm_fd = self->desc.vm_fd, ring_fd, events;

	ASSERT_EQ(0, enable_ring(vm_fd));
	ring_fd = ioctl(vm_fd, KVM_WTRACK_RING_FD, NULL);
	ASSERT_LE(0, ring_fd);
	fcntl(ring_fd, F_SETFL, O_NONBLOCK);
	ASSERT_EQ(0, wtrack_ioctl(vm_fd, KVM_WTRACK_PROTECT, self->data->gpa,
				  self->data->size));
	ASSERT_TRUE(guest_stopped(self->vm));
	events = read_events(ring_fd);
	ASSERT_LE(1, events);
	ASSERT_GE(4, events);

	ASSERT_EQ(0, set_region(vm_fd, self->data, self->data->gpa,
				self->data->flags | KVM_MEM_LOG_DIRTY_PAGES));
	ASSERT_EQ(-EINVAL, set_region(vm_fd, self->data, self->data->gpa + (1ULL << 30),
				      self->data->flags | KVM_MEM_LOG_DIRTY_PAGES));
	ASSERT_TRUE(guest_stopped(self->vm)) TH_LOG("a vCPU stopped waiting");
	ASSERT_EQ(0, read_events(ring_fd));

	ASSERT_EQ(0, wtrack_ioctl(vm_fd, KVM_WTRACK_UNPROTECT, self->data->gpa,
				  self->data->size));
	snapvm_wait_checks(self->vm, 2);
	ASSERT_EQ(0, set_region(vm_fd, self->data, self->data->gpa, self->data->flags));
	close(ring_fd);
}

#define ONE_PAGE_GPA	0xc0000000ULL
#define ONE_PAGE_SLOT	1
#define ONE_PAGE_VCPUS	8
#define ONE_PAGE_SECONDS 4
/* Where the host raises the flag that stops the guests, in the same page. */
#define ONE_PAGE_STOP	(ONE_PAGE_GPA + PAGE_SIZE / 2)

/*
 * Each vCPU increments its own counter in the page until told to stop, and
 * checks the counter against its own count: an increment lost or replayed
 * (the read-modify-write landing twice) shows.
 */
static void one_page_guest(uint64_t counter)
{
	volatile uint64_t *p = (volatile uint64_t *)counter;
	uint64_t n = 0;

	while (!*(volatile uint64_t *)ONE_PAGE_STOP) {
		asm volatile("incq %0" : "+m"(*p));
		n++;
	}
	GUEST_ASSERT_EQ(*p, n);
	GUEST_DONE();
}

static void *one_page_vcpu(void *vcpu)
{
	vcpu_run_to_ucall(vcpu, UCALL_DONE);
	return NULL;
}

/* A VM of its own, without snapvm's guest running alongside. */
FIXTURE(one_page) {
};

FIXTURE_SETUP(one_page)
{
	TEST_REQUIRE(kvm_check_cap(KVM_CAP_X86_WRITE_TRACK) & KVM_WTRACK_ENABLE_RING);
}

FIXTURE_TEARDOWN(one_page)
{
}

/*
 * Eight vCPUs write one page, which is protected again right after each
 * resolve, so that they keep meeting on one event; the consumer resolves.
 */
TEST_F_TIMEOUT(one_page, many_vcpus_write_it, 120)
{
	struct kvm_vcpu *vcpus[ONE_PAGE_VCPUS];
	pthread_t threads[ONE_PAGE_VCPUS];
	time_t end = time(NULL) + ONE_PAGE_SECONDS;
	struct consumer c = { 0 };
	struct wtrack_stats st;
	uint64_t protects = 0;
	struct kvm_vm *vm;
	int i;

	vm = vm_create_with_vcpus(ONE_PAGE_VCPUS, one_page_guest, vcpus);
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, ONE_PAGE_GPA,
				    ONE_PAGE_SLOT, 1, 0);
	virt_map(vm, ONE_PAGE_GPA, ONE_PAGE_GPA, 1);

	sigaction(SIGUSR2, &(struct sigaction){ .sa_handler = noop }, NULL);
	ASSERT_EQ(0, wtrack_open(vm->fd, NULL, &c.wt));
	pthread_create(&c.thread, NULL, consume, &c);
	for (i = 0; i < ONE_PAGE_VCPUS; i++) {
		vcpu_args_set(vcpus[i], 1, ONE_PAGE_GPA + i * sizeof(uint64_t));
		pthread_create(&threads[i], NULL, one_page_vcpu, vcpus[i]);
	}

	while (time(NULL) < end) {
		ASSERT_EQ(0, wtrack_protect(c.wt, ONE_PAGE_GPA, PAGE_SIZE));
		protects++;
		usleep(100);
	}
	ASSERT_EQ(0, wtrack_stats(c.wt, &st));
	*(volatile uint64_t *)addr_gpa2hva(vm, ONE_PAGE_STOP) = 1;
	ASSERT_EQ(0, wtrack_unprotect(c.wt, ONE_PAGE_GPA, PAGE_SIZE));
	for (i = 0; i < ONE_PAGE_VCPUS; i++)
		pthread_join(threads[i], NULL);
	consumer_stop(&c);
	wtrack_close(c.wt);

	TH_LOG("%lu protects, %lu events, %lu writes joined a waiting event",
	       protects, st.events, st.coalesced);
	ASSERT_LT(0, st.coalesced);
	kvm_vm_free(vm);
}

TEST_HARNESS_MAIN
