// SPDX-License-Identifier: GPL-2.0
/*
 * Ring mode of kvm-wtrack: a guest write to a protected page posts one
 * event to the ring and the vCPU waits in the kernel, the write not
 * landed, until the page is resolved; several vCPUs on one page share an
 * event; a full ring makes vCPUs wait for space; a signal ends KVM_RUN
 * with the write still to do; and a consumer that goes away releases
 * every vCPU.  Consumers here use read(), the mapping and io_uring (with
 * 128-byte SQEs, which the commands need).  KVM's own writes are events
 * that come with the end of their page's protection.
 */
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#include "kvm_util.h"
#include "processor.h"
#include "kselftest_harness.h"
#include "wtrack_ring_util.h"

#define DATA_GPA	0xc0000000ULL
#define DATA_SLOT	1
#define DATA_PAGES	64
#define NR_VCPUS	2
#define PATTERN		0x6f6f6f6f6f6f6f6fULL
#define PAGE(n)		(DATA_GPA + (n) * PAGE_SIZE)

/* Write @val + i at the start of @npages pages from @addr, in order. */
static void guest_code(uint64_t addr, uint64_t npages, uint64_t val)
{
	for (uint64_t i = 0; i < npages; i++)
		*(volatile uint64_t *)(addr + i * PAGE_SIZE) = val + i;
	GUEST_DONE();
}

#define IO_PORT		0x1234

/* REP INSB of @count bytes from IO_PORT to @addr: always emulated. */
static void guest_insb(uint64_t addr, uint64_t count)
{
	asm volatile("rep insb" : "+D"(addr), "+c"(count) : "d"(IO_PORT) : "memory");
	GUEST_DONE();
}

FIXTURE(ring) {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpus[NR_VCPUS];
	struct wtrack_vcpu_run runs[NR_VCPUS];
	struct wtrack_test_ring ring;
};

static void set_guest_writes(struct kvm_vcpu *vcpu, uint64_t gpa, int npages,
			     uint64_t val)
{
	vcpu_args_set(vcpu, 3, gpa, npages, val);
}

/* Ring mode with @entries entries, a consumer fd, its mapping and io_uring. */
static void ring_open(struct __test_metadata *_metadata, FIXTURE_DATA(ring) *self,
		      uint64_t entries)
{
	ASSERT_EQ(__vm_enable_wtrack_ring(self->vm, entries), 0);
	wtrack_ring_attach(self->vm, &self->ring);
}

static void ring_vm_create(FIXTURE_DATA(ring) *self)
{
	self->vm = vm_create_with_vcpus(NR_VCPUS, guest_code, self->vcpus);
	vm_userspace_mem_region_add(self->vm, VM_MEM_SRC_ANONYMOUS, DATA_GPA,
				    DATA_SLOT, DATA_PAGES, 0);
	virt_map(self->vm, DATA_GPA, DATA_GPA, DATA_PAGES);
	memset(addr_gpa2hva(self->vm, DATA_GPA), 0x6f, DATA_PAGES * PAGE_SIZE);
	self->ring.fd = -1;
	self->ring.hdr = NULL;
}

FIXTURE_SETUP(ring)
{
	TEST_REQUIRE(kvm_check_cap(KVM_CAP_X86_WRITE_TRACK) & KVM_WTRACK_ENABLE_RING);
	ring_vm_create(self);
}

/* kvm.wtrack_poll_ns: how long a waiting vCPU polls before it sleeps. */
static int set_poll_ns(unsigned int ns)
{
	return wtrack_set_kvm_param("wtrack_poll_ns", ns);
}

FIXTURE_TEARDOWN(ring)
{
	set_poll_ns(0);
	wtrack_ring_detach(&self->ring);
	if (self->vm)
		kvm_vm_free(self->vm);
}

static uint64_t *hva(struct kvm_vm *vm, uint64_t gpa)
{
	return addr_gpa2hva(vm, gpa);
}

static void check_event(struct __test_metadata *_metadata,
			struct kvm_wtrack_event ev, uint64_t gpa, int vcpu_id,
			uint64_t seq)
{
	ASSERT_EQ(ev.gpa, gpa);
	ASSERT_EQ(ev.size, PAGE_SIZE - (gpa & (PAGE_SIZE - 1)));
	if (vcpu_id >= 0)
		ASSERT_EQ(ev.vcpu_id, vcpu_id);
	ASSERT_EQ(ev.flags, 0);		/* a stopped write */
	ASSERT_EQ(ev.seq, seq);
	for (int i = 0; i < ARRAY_SIZE(ev.reserved); i++)
		ASSERT_EQ(ev.reserved[i], 0);
}

/* The vCPU stays in KVM_RUN and its write has not landed. */
static void check_waiting(struct __test_metadata *_metadata, struct kvm_vm *vm,
			  struct wtrack_vcpu_run *run, uint64_t gpa)
{
	usleep(100 * 1000);
	ASSERT_FALSE(run->done);
	ASSERT_EQ(*hva(vm, gpa), PATTERN);
}

TEST_F(ring, enable_and_fd_errors)
{
	static const uint64_t bad_entries[] = { 0, 1, 8, 17, 1000, 131072, 1ULL << 32 };
	void *p;
	int fd;

	ASSERT_EQ(__vm_wtrack_ring_fd(self->vm), -1);
	ASSERT_EQ(errno, ENXIO);
	for (int i = 0; i < ARRAY_SIZE(bad_entries); i++) {
		ASSERT_EQ(__vm_enable_wtrack_ring(self->vm, bad_entries[i]), -1);
		ASSERT_EQ(errno, EINVAL);
	}
	ASSERT_EQ(__vm_enable_wtrack(self->vm, KVM_WTRACK_ENABLE_RING | KVM_WTRACK_ENABLE_EXIT,
				     16), -1);
	ASSERT_EQ(errno, EINVAL);
	ASSERT_EQ(__vm_enable_wtrack_ring(self->vm, 16), 0);

	/* Protection needs a consumer to resolve its events. */
	ASSERT_EQ(__vm_wtrack(self->vm, KVM_WTRACK_PROTECT, PAGE(0), PAGE_SIZE), -1);
	ASSERT_EQ(errno, ENOTCONN);

	/* Its argument must be 0, and a refused call attaches nothing. */
	ASSERT_EQ(__vm_ioctl(self->vm, KVM_WTRACK_RING_FD, (void *)1), -1);
	ASSERT_EQ(errno, EINVAL);
	self->ring.fd = __vm_wtrack_ring_fd(self->vm);
	ASSERT_GE(self->ring.fd, 0);
	ASSERT_EQ(__vm_wtrack_ring_fd(self->vm), -1);
	ASSERT_EQ(errno, EBUSY);

	/* The kernel writes the mapping, userspace only reads it. */
	p = mmap(NULL, getpagesize(), PROT_READ | PROT_WRITE, MAP_SHARED, self->ring.fd, 0);
	ASSERT_EQ(p, MAP_FAILED);
	ASSERT_EQ(errno, EPERM);
	wtrack_ring_map(&self->ring);
	ASSERT_EQ(mprotect((void *)self->ring.hdr, getpagesize(), PROT_READ | PROT_WRITE), -1);
	ASSERT_EQ(self->ring.hdr->size, 16);
	ASSERT_EQ(self->ring.hdr->events_offset, getpagesize());
	ASSERT_EQ(self->ring.hdr->event_size, sizeof(struct kvm_wtrack_event));
	ASSERT_EQ(self->ring.hdr->event_size, 64);
	ASSERT_EQ(self->ring.hdr->pad, 0);
	ASSERT_EQ(self->ring.hdr->features, 0);
	ASSERT_EQ(self->ring.hdr->tail, 0);
	ASSERT_EQ(self->ring.hdr->head, 0);
	p = mmap(NULL, self->ring.map_size + getpagesize(), PROT_READ, MAP_SHARED,
		 self->ring.fd, 0);
	ASSERT_EQ(p, MAP_FAILED);

	/* The fd must be closed and unmapped before the next consumer. */
	close(self->ring.fd);
	ASSERT_EQ(__vm_wtrack_ring_fd(self->vm), -1);
	ASSERT_EQ(errno, EBUSY);
	munmap((void *)self->ring.hdr, self->ring.map_size);
	self->ring.hdr = NULL;
	fd = __vm_wtrack_ring_fd(self->vm);
	ASSERT_GE(fd, 0);
	self->ring.fd = fd;
}

TEST_F(ring, exit_mode_has_no_ring)
{
	ASSERT_EQ(__vm_enable_wtrack(self->vm, KVM_WTRACK_ENABLE_EXIT, 16), -1);
	ASSERT_EQ(errno, EINVAL);
	ASSERT_EQ(__vm_enable_wtrack(self->vm, KVM_WTRACK_ENABLE_EXIT, 0), 0);
	ASSERT_EQ(__vm_wtrack_ring_fd(self->vm), -1);
	ASSERT_EQ(errno, EINVAL);
}

TEST_F(ring, write_waits_for_resolve_then_lands_once)
{
	struct kvm_wtrack_event ev[4];
	uint64_t gpa = PAGE(3);

	ring_open(_metadata, self, 16);
	vm_wtrack_protect(self->vm, gpa, PAGE_SIZE);
	set_guest_writes(self->vcpus[0], gpa, 1, 0x1234);
	wtrack_vcpu_run_start(&self->runs[0], self->vcpus[0]);

	/* A blocking read() is a consumer too. */
	ASSERT_EQ(read(self->ring.fd, ev, sizeof(ev)), sizeof(ev[0]));
	check_event(_metadata, ev[0], gpa, self->vcpus[0]->id, 0);
	ASSERT_EQ(self->ring.hdr->head, 1);
	ASSERT_EQ(self->ring.hdr->events, 1);
	check_waiting(_metadata, self->vm, &self->runs[0], gpa);

	vm_wtrack_unprotect(self->vm, gpa, PAGE_SIZE);
	wtrack_vcpu_run_join(&self->runs[0], UCALL_DONE);
	ASSERT_EQ(*hva(self->vm, gpa), 0x1234);
	ASSERT_EQ(self->ring.hdr->resolved, 1);
	ASSERT_EQ(self->ring.hdr->polled, 0);
	ASSERT_EQ(wtrack_ring_tail(&self->ring), 1);

	/* Nothing more to read, and poll() says so. */
	ASSERT_EQ(poll(&(struct pollfd){ .fd = self->ring.fd, .events = POLLIN }, 1, 0), 0);
	fcntl(self->ring.fd, F_SETFL, O_NONBLOCK);
	ASSERT_EQ(read(self->ring.fd, ev, sizeof(ev)), -1);
	ASSERT_EQ(errno, EAGAIN);
	ASSERT_EQ(read(self->ring.fd, ev, sizeof(ev[0]) - 1), -1);
	ASSERT_EQ(errno, EINVAL);
}

TEST_F(ring, vcpus_on_one_page_share_one_event)
{
	uint64_t gpa = PAGE(7);
	int i;

	ring_open(_metadata, self, 16);
	vm_wtrack_protect(self->vm, gpa, PAGE_SIZE);
	for (i = 0; i < NR_VCPUS; i++) {
		set_guest_writes(self->vcpus[i], gpa, 1, 0x100 + i);
		wtrack_vcpu_run_start(&self->runs[i], self->vcpus[i]);
	}

	wtrack_wait_until(self->ring.hdr->coalesced == NR_VCPUS - 1);
	ASSERT_EQ(wtrack_ring_tail(&self->ring), 1);
	ASSERT_EQ(poll(&(struct pollfd){ .fd = self->ring.fd, .events = POLLIN }, 1, 0), 1);
	check_event(_metadata, wtrack_ring_event(&self->ring, 0), gpa, -1, 0);
	for (i = 0; i < NR_VCPUS; i++)
		check_waiting(_metadata, self->vm, &self->runs[i], gpa);

	/* One resolve releases them all. */
	vm_wtrack_unprotect(self->vm, gpa, PAGE_SIZE);
	for (i = 0; i < NR_VCPUS; i++)
		wtrack_vcpu_run_join(&self->runs[i], UCALL_DONE);
	ASSERT_EQ(self->ring.hdr->resolved, 1);
	ASSERT_EQ(wtrack_ring_tail(&self->ring), 1);
}

static void sigusr1(int sig)
{
}

TEST_F(ring, signal_ends_the_wait_and_the_write_is_retried)
{
	struct sigaction sa = { .sa_handler = sigusr1 };
	struct wtrack_vcpu_run *run = &self->runs[0];
	uint64_t gpa = PAGE(9) + 0x48;

	ASSERT_EQ(sigaction(SIGUSR1, &sa, NULL), 0);
	ring_open(_metadata, self, 16);
	vm_wtrack_protect(self->vm, PAGE(9), PAGE_SIZE);
	set_guest_writes(self->vcpus[0], gpa, 1, 0x5678);
	wtrack_vcpu_run_start(run, self->vcpus[0]);
	wtrack_wait_until(wtrack_ring_tail(&self->ring) == 1);
	check_event(_metadata, wtrack_ring_event(&self->ring, 0), gpa, self->vcpus[0]->id, 0);
	check_waiting(_metadata, self->vm, run, gpa);

	pthread_kill(run->thread, SIGUSR1);
	pthread_join(run->thread, NULL);
	ASSERT_EQ(run->r, -1);
	ASSERT_EQ(run->err, EINTR);
	ASSERT_EQ(self->vcpus[0]->run->exit_reason, KVM_EXIT_INTR);
	ASSERT_EQ(*hva(self->vm, gpa), PATTERN);

	/* The page's event is still unresolved: the retry joins it. */
	wtrack_vcpu_run_start(run, self->vcpus[0]);
	wtrack_wait_until(self->ring.hdr->coalesced == 1);
	ASSERT_EQ(wtrack_ring_tail(&self->ring), 1);
	check_waiting(_metadata, self->vm, run, gpa);

	vm_wtrack_unprotect(self->vm, PAGE(9), PAGE_SIZE);
	wtrack_vcpu_run_join(run, UCALL_DONE);
	ASSERT_EQ(*hva(self->vm, gpa), 0x5678);
}

/*
 * With kvm.wtrack_poll_ns, a vCPU whose page is resolved while it polls
 * goes on without sleeping; a signal still ends its wait at once.  The
 * vCPU gets a CPU of its own: polling stops when another task wants it.
 */
TEST_F(ring, vcpu_polls_for_a_quick_resolve)
{
	struct sigaction sa = { .sa_handler = sigusr1 };
	struct wtrack_vcpu_run *run = &self->runs[0];

	if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
		SKIP(return, "a polling vCPU needs a CPU of its own");
	kvm_pin_this_task_to_pcpu(0);
	ASSERT_EQ(sigaction(SIGUSR1, &sa, NULL), 0);
	ASSERT_EQ(set_poll_ns(3000000000u), 0);
	ring_open(_metadata, self, 16);
	vm_wtrack_protect(self->vm, PAGE(0), 4 * PAGE_SIZE);

	/*
	 * Resolve each page at once.  Even so, another task that wants the
	 * CPU ends a poll early, so of three tries one must see the resolve.
	 */
	set_guest_writes(self->vcpus[0], PAGE(0), 3, 0x31);
	wtrack_vcpu_run_start_on(run, self->vcpus[0], 1);
	for (int i = 0; i < 3; i++) {
		while (wtrack_ring_tail(&self->ring) != i + 1)
			;
		vm_wtrack_unprotect(self->vm, PAGE(i), PAGE_SIZE);
	}
	wtrack_vcpu_run_join(run, UCALL_DONE);
	ASSERT_GE(self->ring.hdr->polled, 1);

	run = &self->runs[1];
	set_guest_writes(self->vcpus[1], PAGE(3), 1, 0x32);
	wtrack_vcpu_run_start_on(run, self->vcpus[1], 1);
	wtrack_wait_until(wtrack_ring_tail(&self->ring) == 4);
	check_waiting(_metadata, self->vm, run, PAGE(3));
	pthread_kill(run->thread, SIGUSR1);
	pthread_join(run->thread, NULL);
	ASSERT_EQ(run->err, EINTR);
	ASSERT_EQ(*hva(self->vm, PAGE(3)), PATTERN);
}

/*
 * Resolve every page as its event appears, but hand no entry back: the
 * seventeenth write of a 16-entry ring waits for space, and read() frees
 * the ring.  No event is lost or out of order.
 */
TEST_F(ring, full_ring_waits_for_space)
{
	struct kvm_wtrack_event ev[16];
	const int n = 20, size = 16;
	uint32_t seen = 0;
	int i;

	ring_open(_metadata, self, size);
	vm_wtrack_protect(self->vm, PAGE(0), n * PAGE_SIZE);
	set_guest_writes(self->vcpus[0], PAGE(0), n, 0x1000);
	wtrack_vcpu_run_start(&self->runs[0], self->vcpus[0]);

	while (seen < size) {
		wtrack_wait_until(wtrack_ring_tail(&self->ring) > seen);
		vm_wtrack_unprotect(self->vm, PAGE(seen), PAGE_SIZE);
		seen++;
	}
	wtrack_wait_until(self->ring.hdr->space_waits == 1);
	ASSERT_EQ(wtrack_ring_tail(&self->ring), size);
	check_waiting(_metadata, self->vm, &self->runs[0], PAGE(size));

	ASSERT_EQ(read(self->ring.fd, ev, sizeof(ev)), sizeof(ev));
	for (i = 0; i < size; i++)
		check_event(_metadata, ev[i], PAGE(i), self->vcpus[0]->id, i);

	while (seen < n) {
		wtrack_wait_until(wtrack_ring_tail(&self->ring) > seen);
		check_event(_metadata, wtrack_ring_event(&self->ring, seen), PAGE(seen),
			    self->vcpus[0]->id, seen);
		vm_wtrack_unprotect(self->vm, PAGE(seen), PAGE_SIZE);
		seen++;
	}
	wtrack_vcpu_run_join(&self->runs[0], UCALL_DONE);
	for (i = 0; i < n; i++)
		ASSERT_EQ(*hva(self->vm, PAGE(i)), 0x1000 + i);
	ASSERT_EQ(self->ring.hdr->events, n);
}

TEST_F(ring, deleted_memslot_releases_the_waiter)
{
	struct wtrack_vcpu_run *run = &self->runs[0];
	uint64_t gpa = PAGE(5);

	ring_open(_metadata, self, 16);
	vm_wtrack_protect(self->vm, gpa, PAGE_SIZE);
	set_guest_writes(self->vcpus[0], gpa, 1, 0x42);
	wtrack_vcpu_run_start(run, self->vcpus[0]);
	wtrack_wait_until(wtrack_ring_tail(&self->ring) == 1);
	check_waiting(_metadata, self->vm, run, gpa);

	/* The write retries into unbacked memory: MMIO for userspace. */
	vm_mem_region_delete(self->vm, DATA_SLOT);
	pthread_join(run->thread, NULL);
	ASSERT_EQ(run->r, 0);
	TEST_ASSERT_KVM_EXIT_REASON(self->vcpus[0], KVM_EXIT_MMIO);
	ASSERT_EQ(self->vcpus[0]->run->mmio.phys_addr, gpa);
	ASSERT_TRUE(self->vcpus[0]->run->mmio.is_write);
	ASSERT_EQ(self->ring.hdr->resolved, 1);
}

/*
 * A write KVM made itself is an event with KVM_WTRACK_EVENT_LANDED that
 * nobody waits for and nobody resolves: by the time it is posted, KVM has
 * ended the page's protection.
 */
TEST_F(ring, landed_write_is_an_event_and_nobody_waits)
{
	struct kvm_wtrack_event ev;
	uint64_t page = PAGE(11);

	ring_open(_metadata, self, 16);
	vm_wtrack_protect(self->vm, page, PAGE_SIZE);
	/* KVM writes the kvmclock area itself before the next entry. */
	vcpu_set_msr(self->vcpus[0], MSR_KVM_SYSTEM_TIME_NEW, page | 1);
	set_guest_writes(self->vcpus[0], PAGE(12), 1, 1);
	wtrack_vcpu_run_start(&self->runs[0], self->vcpus[0]);
	wtrack_vcpu_run_join(&self->runs[0], UCALL_DONE);

	ASSERT_EQ(read(self->ring.fd, &ev, sizeof(ev)), sizeof(ev));
	ASSERT_EQ(ev.gpa, page);
	ASSERT_EQ(ev.size, PAGE_SIZE);
	ASSERT_EQ(ev.flags, KVM_WTRACK_EVENT_LANDED);
	ASSERT_EQ(ev.vcpu_id, self->vcpus[0]->id);
	ASSERT_EQ(ev.seq, 0);
	for (int i = 0; i < ARRAY_SIZE(ev.reserved); i++)
		ASSERT_EQ(ev.reserved[i], 0);
	ASSERT_EQ(self->ring.hdr->events, 1);

	/* The report ended the page's protection: a guest write goes through. */
	set_guest_writes(self->vcpus[1], page + 0x800, 1, 0x99);
	wtrack_vcpu_run_start(&self->runs[1], self->vcpus[1]);
	wtrack_vcpu_run_join(&self->runs[1], UCALL_DONE);
	ASSERT_EQ(*hva(self->vm, page + 0x800), 0x99);
	ASSERT_EQ(wtrack_ring_tail(&self->ring), 1);
	ASSERT_EQ(self->ring.hdr->resolved, 0);
}

/*
 * KVM_RUN with immediate_exit completes the I/O of the last exit before
 * it returns.  If that completion stops on a protected page (REP INSB's
 * data), the event is posted, or joined, and KVM_RUN returns EINTR at
 * once instead of waiting: the VMM that pauses its vCPUs this way cannot
 * be its own consumer's deadlock.  The port data is kept, and lands once
 * after the resolve.
 */
TEST_F(ring, immediate_exit_posts_a_stopped_completion_and_returns)
{
	struct kvm_vcpu *vcpu = self->vcpus[0];
	uint64_t gpa = PAGE(4) - 8;
	uint8_t *data = (uint8_t *)hva(self->vm, gpa);
	int given;

	vcpu_arch_set_entry_point(vcpu, guest_insb);
	vcpu_args_set(vcpu, 2, gpa, 16);
	ring_open(_metadata, self, 16);

	/* The first 8 bytes, up to the page's end, come from userspace. */
	vcpu_run(vcpu);
	given = wtrack_answer_insb(vcpu, IO_PORT, 0);
	ASSERT_EQ(given, 8);
	vm_wtrack_protect(self->vm, PAGE(3), PAGE_SIZE);

	vcpu->run->immediate_exit = 1;
	ASSERT_EQ(__vcpu_run(vcpu), -1);
	ASSERT_EQ(errno, EINTR);
	ASSERT_EQ(wtrack_ring_tail(&self->ring), 1);
	check_event(_metadata, wtrack_ring_event(&self->ring, 0), gpa, vcpu->id, 0);
	for (int i = 0; i < 16; i++)
		ASSERT_EQ(data[i], 0x6f);

	/* Again: the completion is still there, and joins its event. */
	ASSERT_EQ(__vcpu_run(vcpu), -1);
	ASSERT_EQ(errno, EINTR);
	ASSERT_EQ(wtrack_ring_tail(&self->ring), 1);
	ASSERT_EQ(self->ring.hdr->coalesced, 1);
	ASSERT_EQ(data[0], 0x6f);

	/* Resolved: the held bytes land, and the rest is read once. */
	vm_wtrack_unprotect(self->vm, PAGE(3), PAGE_SIZE);
	vcpu->run->immediate_exit = 0;
	vcpu_run(vcpu);
	given += wtrack_answer_insb(vcpu, IO_PORT, given);
	ASSERT_EQ(given, 16);
	vcpu_run(vcpu);
	ASSERT_EQ(get_ucall(vcpu, NULL), UCALL_DONE);
	for (int i = 0; i < 16; i++)
		ASSERT_EQ(data[i], 0xd0 + i);
	ASSERT_EQ(wtrack_ring_tail(&self->ring), 1);
}

/* Submit the command @op on @r's io_uring; its result is reaped apart. */
static void ring_submit(struct wtrack_test_ring *r, uint32_t op, uint32_t head,
			const struct kvm_wtrack_resolve *res, uint32_t nr)
{
	struct kvm_wtrack_ring_cmd cmd = {
		.head = head,
		.nr_resolve = nr,
		.resolve_addr = (uintptr_t)res,
	};

	wtrack_ring_submit(r, op, &cmd);
}

TEST_F(ring, io_uring_fetch_and_commit)
{
	struct kvm_wtrack_resolve res[KVM_WTRACK_RESOLVE_MAX + 1] = {
		{ .gpa = PAGE(2), .size = PAGE_SIZE },
	};
	struct kvm_wtrack_resolve unbacked = { .gpa = PAGE(DATA_PAGES), .size = PAGE_SIZE };
	struct wtrack_test_ring *r = &self->ring;
	uint64_t ud = 0;
	int fd;

	ring_open(_metadata, self, 16);
	vm_wtrack_protect(self->vm, PAGE(2), PAGE_SIZE);

	/* A FETCH on an empty ring stays in flight until an event. */
	ring_submit(r, KVM_WTRACK_RING_FETCH, 0, res, 1);
	ASSERT_EQ(wtrack_ring_reap_timeout(r, WTRACK_TIMEOUT_MS, NULL), -EINVAL);
	ring_submit(r, KVM_WTRACK_RING_FETCH, 0, NULL, 0);
	ASSERT_EQ(wtrack_ring_reap_timeout(r, 200, NULL), -ETIME);
	ring_submit(r, KVM_WTRACK_RING_FETCH, 0, NULL, 0);
	ASSERT_EQ(wtrack_ring_reap_timeout(r, WTRACK_TIMEOUT_MS, NULL), -EBUSY);

	set_guest_writes(self->vcpus[0], PAGE(2), 1, 0x77);
	wtrack_vcpu_run_start(&self->runs[0], self->vcpus[0]);
	ASSERT_EQ(wtrack_ring_reap_timeout(r, WTRACK_TIMEOUT_MS, &ud), 1);
	ASSERT_EQ(ud, KVM_WTRACK_RING_FETCH);
	check_event(_metadata, wtrack_ring_event(r, 0), PAGE(2), self->vcpus[0]->id, 0);

	/* Bad commands fail and change nothing. */
	ring_submit(r, KVM_WTRACK_RING_COMMIT, 2, res, 1);
	ASSERT_EQ(wtrack_ring_reap_timeout(r, WTRACK_TIMEOUT_MS, NULL), -EINVAL);
	ring_submit(r, KVM_WTRACK_RING_COMMIT, 1, res, KVM_WTRACK_RESOLVE_MAX + 1);
	ASSERT_EQ(wtrack_ring_reap_timeout(r, WTRACK_TIMEOUT_MS, NULL), -EINVAL);
	ring_submit(r, KVM_WTRACK_RING_COMMIT, 1, (void *)8, 1);
	ASSERT_EQ(wtrack_ring_reap_timeout(r, WTRACK_TIMEOUT_MS, NULL), -EFAULT);
	res[1] = (struct kvm_wtrack_resolve){ .gpa = PAGE(2) + 1, .size = PAGE_SIZE };
	ring_submit(r, KVM_WTRACK_RING_COMMIT, 1, res, 2);
	ASSERT_EQ(wtrack_ring_reap_timeout(r, WTRACK_TIMEOUT_MS, NULL), -EINVAL);
	ring_submit(r, 0xdead, 1, NULL, 0);
	ASSERT_EQ(wtrack_ring_reap_timeout(r, WTRACK_TIMEOUT_MS, NULL), -ENOTTY);
	ASSERT_EQ(r->hdr->head, 0);
	check_waiting(_metadata, self->vm, &self->runs[0], PAGE(2));

	/*
	 * Resolve, hand the entry back and wait for more, in one command.
	 * A range without a memslot is skipped, not refused.
	 */
	res[1] = unbacked;
	ring_submit(r, KVM_WTRACK_RING_COMMIT_AND_FETCH, 1, res, 2);
	wtrack_vcpu_run_join(&self->runs[0], UCALL_DONE);
	ASSERT_EQ(*hva(self->vm, PAGE(2)), 0x77);
	ASSERT_EQ(r->hdr->head, 1);
	ASSERT_EQ(r->hdr->resolved, 1);
	ASSERT_EQ(wtrack_ring_reap_timeout(r, 200, NULL), -ETIME);

	/*
	 * Tearing the io_uring down cancels the FETCH in flight, which
	 * holds the ring's file: only then can a new consumer attach.
	 */
	wtrack_ring_detach(r);
	wtrack_wait_until((fd = __vm_wtrack_ring_fd(self->vm)) >= 0 || errno != EBUSY);
	ASSERT_GE(fd, 0);
	r->fd = fd;
}

/*
 * The consumer, a process of its own, dies with vCPUs waiting on its
 * events: they go on, every page is unprotected, tracking ends.
 */
TEST_F(ring, consumer_death_releases_every_vcpu)
{
	int report[2], n, i;
	pid_t child;

	ring_open(_metadata, self, 16);
	ASSERT_EQ(pipe(report), 0);
	child = fork();
	ASSERT_GE(child, 0);
	if (!child) {
		/* An io_uring of its own: the fixture's is the parent's too. */
		struct wtrack_test_ring r = { .fd = self->ring.fd, .hdr = self->ring.hdr };

		/*
		 * Wait for both events, tell the parent, never resolve; die
		 * with a FETCH in flight.
		 */
		if (io_uring_queue_init(4, &r.uring, IORING_SETUP_SQE128))
			_exit(1);
		ring_submit(&r, KVM_WTRACK_RING_FETCH, 0, NULL, 0);
		if (wtrack_ring_reap_timeout(&r, WTRACK_TIMEOUT_MS, NULL) < 1)
			_exit(1);
		wtrack_wait_until(wtrack_ring_tail(&r) == NR_VCPUS);
		n = wtrack_ring_tail(&r);
		ring_submit(&r, KVM_WTRACK_RING_FETCH, n, NULL, 0);
		if (write(report[1], &n, sizeof(n)) != sizeof(n))
			_exit(1);
		pause();
		_exit(0);
	}
	/* Only the child holds the ring now. */
	wtrack_ring_detach(&self->ring);

	for (i = 0; i < NR_VCPUS; i++) {
		vm_wtrack_protect(self->vm, PAGE(20 + i), PAGE_SIZE);
		set_guest_writes(self->vcpus[i], PAGE(20 + i), 1, 0x900 + i);
		wtrack_vcpu_run_start(&self->runs[i], self->vcpus[i]);
	}
	ASSERT_EQ(read(report[0], &n, sizeof(n)), sizeof(n));
	ASSERT_EQ(n, NR_VCPUS);
	for (i = 0; i < NR_VCPUS; i++)
		check_waiting(_metadata, self->vm, &self->runs[i], PAGE(20 + i));

	kill(child, SIGKILL);
	ASSERT_EQ(waitpid(child, NULL, 0), child);
	for (i = 0; i < NR_VCPUS; i++) {
		wtrack_vcpu_run_join(&self->runs[i], UCALL_DONE);
		ASSERT_EQ(*hva(self->vm, PAGE(20 + i)), 0x900 + i);
	}

	/* Tracking ended; a new consumer can start it again. */
	wtrack_wait_until(__vm_wtrack(self->vm, KVM_WTRACK_PROTECT, PAGE(0), PAGE_SIZE) == -1 &&
			  errno == ENOTCONN);
	self->ring.fd = __vm_wtrack_ring_fd(self->vm);
	ASSERT_GE(self->ring.fd, 0);
	vm_wtrack_protect(self->vm, PAGE(0), PAGE_SIZE);
}

/*
 * The VM fd closed while a vCPU waits: the ring keeps the VM alive, and
 * its consumer can still resolve.  Nothing leaks or hangs after.
 */
TEST_F(ring, vm_fd_closed_with_a_waiter)
{
	struct kvm_wtrack_resolve res = { .gpa = PAGE(4), .size = PAGE_SIZE };

	ring_open(_metadata, self, 16);
	vm_wtrack_protect(self->vm, PAGE(4), PAGE_SIZE);
	set_guest_writes(self->vcpus[0], PAGE(4), 1, 0xabc);
	wtrack_vcpu_run_start(&self->runs[0], self->vcpus[0]);
	wtrack_wait_until(wtrack_ring_tail(&self->ring) == 1);

	ASSERT_EQ(close(self->vm->fd), 0);
	check_waiting(_metadata, self->vm, &self->runs[0], PAGE(4));

	ring_submit(&self->ring, KVM_WTRACK_RING_COMMIT, 1, &res, 1);
	ASSERT_EQ(wtrack_ring_reap_timeout(&self->ring, WTRACK_TIMEOUT_MS, NULL), 0);
	wtrack_vcpu_run_join(&self->runs[0], UCALL_DONE);
	ASSERT_EQ(*hva(self->vm, PAGE(4)), 0xabc);

	/* kvm_vm_free() would use the closed fd: release by hand. */
	for (int i = 0; i < NR_VCPUS; i++)
		close(self->vcpus[i]->fd);
	wtrack_ring_detach(&self->ring);
	self->vm = NULL;
}

/* A VMM killed with vCPUs waiting: its process goes away promptly. */
TEST_F(ring, vmm_killed_with_waiters_exits)
{
	int status;
	pid_t child;

	child = fork();
	ASSERT_GE(child, 0);
	if (!child) {
		/* KVM serves a VM only to the process that created it. */
		ring_vm_create(self);
		ring_open(_metadata, self, 16);
		for (int i = 0; i < NR_VCPUS; i++) {
			vm_wtrack_protect(self->vm, PAGE(30 + i), PAGE_SIZE);
			set_guest_writes(self->vcpus[i], PAGE(30 + i), 1, 1);
			wtrack_vcpu_run_start(&self->runs[i], self->vcpus[i]);
		}
		wtrack_wait_until(wtrack_ring_tail(&self->ring) == NR_VCPUS);
		kill(getpid(), SIGKILL);
	}

	wtrack_wait_until(waitpid(child, &status, WNOHANG) == child);
	ASSERT_TRUE(WIFSIGNALED(status));
	ASSERT_EQ(WTERMSIG(status), SIGKILL);
}

TEST_HARNESS_MAIN
