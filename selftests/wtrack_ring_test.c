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
#include <sched.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <liburing.h>

#include "kvm_util.h"
#include "processor.h"
#include "kselftest_harness.h"
#include "wtrack_util.h"

#define DATA_GPA	0xc0000000ULL
#define DATA_SLOT	1
#define DATA_PAGES	64
#define NR_VCPUS	2
#define PATTERN		0x6f6f6f6f6f6f6f6fULL
#define PAGE(n)		(DATA_GPA + (n) * PAGE_SIZE)
/* Under software emulation a vCPU may take a while to get anywhere. */
#define TIMEOUT_MS	20000

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

/* One KVM_RUN in a thread of its own, so the test can watch it wait. */
struct vcpu_run {
	struct kvm_vcpu *vcpu;
	pthread_t thread;
	int r, err;
	volatile bool done;
};

static void *vcpu_run_thread(void *arg)
{
	struct vcpu_run *run = arg;

	/* Not _vcpu_run(), which retries KVM_RUN on EINTR. */
	run->r = __vcpu_run(run->vcpu);
	run->err = errno;
	run->done = true;
	return NULL;
}

/* @attr: the thread's attributes, or NULL. */
static void __vcpu_run_start(struct vcpu_run *run, struct kvm_vcpu *vcpu,
			     const pthread_attr_t *attr)
{
	run->vcpu = vcpu;
	run->done = false;
	pthread_create(&run->thread, attr, vcpu_run_thread, run);
}

static void vcpu_run_start(struct vcpu_run *run, struct kvm_vcpu *vcpu)
{
	__vcpu_run_start(run, vcpu, NULL);
}

static void pin_to_cpu(cpu_set_t *set, int cpu)
{
	CPU_ZERO(set);
	CPU_SET(cpu, set);
}

/* The same, on @cpu from its start. */
static void vcpu_run_start_on(struct vcpu_run *run, struct kvm_vcpu *vcpu, int cpu)
{
	pthread_attr_t attr;
	cpu_set_t set;

	pin_to_cpu(&set, cpu);
	pthread_attr_init(&attr);
	pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
	__vcpu_run_start(run, vcpu, &attr);
	pthread_attr_destroy(&attr);
}

/* Join a KVM_RUN that must have ended with the guest done. */
static void vcpu_run_join_done(struct vcpu_run *run)
{
	struct ucall uc;

	pthread_join(run->thread, NULL);
	TEST_ASSERT(!run->r, "KVM_RUN: %d errno %d (exit %s)", run->r, run->err,
		    exit_reason_str(run->vcpu->run->exit_reason));
	TEST_ASSERT_KVM_EXIT_REASON(run->vcpu, KVM_EXIT_IO);
	if (get_ucall(run->vcpu, &uc) == UCALL_ABORT)
		REPORT_GUEST_ASSERT(uc);
	TEST_ASSERT_EQ(uc.cmd, UCALL_DONE);
}

static void msleep(int ms)
{
	usleep(ms * 1000);
}

/* @cond is evaluated once per millisecond, and may have side effects. */
#define wait_until(cond)						\
({									\
	bool __ok;							\
	int __ms = 0;							\
									\
	while (!(__ok = (cond)) && __ms < TIMEOUT_MS) {			\
		msleep(1);						\
		__ms++;							\
	}								\
	TEST_ASSERT(__ok, "timed out waiting for " #cond);		\
})

FIXTURE(ring) {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpus[NR_VCPUS];
	struct vcpu_run runs[NR_VCPUS];
	int ring_fd;
	const volatile struct kvm_wtrack_ring_header *hdr;
	const volatile char *events;	/* header.event_size bytes apart */
	size_t map_size;
};

static void set_guest_writes(struct kvm_vcpu *vcpu, uint64_t gpa, int npages,
			     uint64_t val)
{
	vcpu_args_set(vcpu, 3, gpa, npages, val);
}

static int __enable_ring(struct kvm_vm *vm, uint64_t flags, uint64_t entries)
{
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_X86_WRITE_TRACK,
		.args = { flags, entries },
	};

	return __vm_ioctl(vm, KVM_ENABLE_CAP, &cap);
}

static void ring_map(struct __test_metadata *_metadata, FIXTURE_DATA(ring) *self)
{
	const struct kvm_wtrack_ring_header *hdr;

	hdr = mmap(NULL, getpagesize(), PROT_READ, MAP_SHARED, self->ring_fd, 0);
	ASSERT_NE(hdr, MAP_FAILED);
	/* A consumer strides by event_size, which covers what it knows. */
	ASSERT_GE(hdr->event_size, sizeof(struct kvm_wtrack_event));
	self->map_size = hdr->events_offset + (size_t)hdr->size * hdr->event_size;
	munmap((void *)hdr, getpagesize());

	hdr = mmap(NULL, self->map_size, PROT_READ, MAP_SHARED, self->ring_fd, 0);
	ASSERT_NE(hdr, MAP_FAILED);
	self->hdr = hdr;
	self->events = (const void *)hdr + hdr->events_offset;
}

/* Ring mode with @entries entries, a consumer fd and its mapping. */
static void ring_open(struct __test_metadata *_metadata, FIXTURE_DATA(ring) *self,
		      uint64_t entries)
{
	ASSERT_EQ(__enable_ring(self->vm, KVM_WTRACK_ENABLE_RING, entries), 0);
	self->ring_fd = __vm_ioctl(self->vm, KVM_WTRACK_RING_FD, NULL);
	ASSERT_GE(self->ring_fd, 0);
	ring_map(_metadata, self);
}

static void ring_close(FIXTURE_DATA(ring) *self)
{
	if (self->hdr)
		munmap((void *)self->hdr, self->map_size);
	if (self->ring_fd >= 0)
		close(self->ring_fd);
	self->hdr = NULL;
	self->ring_fd = -1;
}

static uint32_t ring_tail(FIXTURE_DATA(ring) *self)
{
	return __atomic_load_n(&self->hdr->tail, __ATOMIC_ACQUIRE);
}

static struct kvm_wtrack_event ring_event(FIXTURE_DATA(ring) *self, uint32_t i)
{
	size_t off = (size_t)(i & (self->hdr->size - 1)) * self->hdr->event_size;

	return *(struct kvm_wtrack_event *)(self->events + off);
}

static void ring_vm_create(FIXTURE_DATA(ring) *self)
{
	self->vm = vm_create_with_vcpus(NR_VCPUS, guest_code, self->vcpus);
	vm_userspace_mem_region_add(self->vm, VM_MEM_SRC_ANONYMOUS, DATA_GPA,
				    DATA_SLOT, DATA_PAGES, 0);
	virt_map(self->vm, DATA_GPA, DATA_GPA, DATA_PAGES);
	memset(addr_gpa2hva(self->vm, DATA_GPA), 0x6f, DATA_PAGES * PAGE_SIZE);
	self->ring_fd = -1;
	self->hdr = NULL;
}

FIXTURE_SETUP(ring)
{
	TEST_REQUIRE(kvm_check_cap(KVM_CAP_X86_WRITE_TRACK) & KVM_WTRACK_ENABLE_RING);
	ring_vm_create(self);
}

#define POLL_NS_PARAM	"/sys/module/kvm/parameters/wtrack_poll_ns"
/* Debug kernels only (CONFIG_KVM_WRITE_TRACK_DEBUG): a ring release sleeps. */
#define DELAY_RELEASE_PARAM	"/sys/module/kvm/parameters/wtrack_delay_release_us"

static int set_param(const char *path, unsigned int val)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return -errno;
	fprintf(f, "%u\n", val);
	return fclose(f) ? -errno : 0;
}

/* kvm.wtrack_poll_ns: how long a waiting vCPU polls before it sleeps. */
static int set_poll_ns(unsigned int ns)
{
	return set_param(POLL_NS_PARAM, ns);
}

FIXTURE_TEARDOWN(ring)
{
	set_poll_ns(0);
	set_param(DELAY_RELEASE_PARAM, 0);
	ring_close(self);
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
			  struct vcpu_run *run, uint64_t gpa)
{
	msleep(100);
	ASSERT_FALSE(run->done);
	ASSERT_EQ(*hva(vm, gpa), PATTERN);
}

TEST_F(ring, enable_and_fd_errors)
{
	static const uint64_t bad_entries[] = { 0, 1, 8, 17, 1000, 131072, 1ULL << 32 };
	void *p;
	int fd;

	ASSERT_EQ(__vm_ioctl(self->vm, KVM_WTRACK_RING_FD, NULL), -1);
	ASSERT_EQ(errno, ENXIO);
	for (int i = 0; i < ARRAY_SIZE(bad_entries); i++) {
		ASSERT_EQ(__enable_ring(self->vm, KVM_WTRACK_ENABLE_RING, bad_entries[i]), -1);
		ASSERT_EQ(errno, EINVAL);
	}
	ASSERT_EQ(__enable_ring(self->vm, KVM_WTRACK_ENABLE_RING | KVM_WTRACK_ENABLE_EXIT,
				16), -1);
	ASSERT_EQ(errno, EINVAL);
	ASSERT_EQ(__enable_ring(self->vm, KVM_WTRACK_ENABLE_RING, 16), 0);

	/* Protection needs a consumer to resolve its events. */
	ASSERT_EQ(__vm_wtrack(self->vm, KVM_WTRACK_PROTECT, PAGE(0), PAGE_SIZE), -1);
	ASSERT_EQ(errno, ENOTCONN);

	/* Its argument must be 0, and a refused call attaches nothing. */
	ASSERT_EQ(__vm_ioctl(self->vm, KVM_WTRACK_RING_FD, (void *)1), -1);
	ASSERT_EQ(errno, EINVAL);
	self->ring_fd = __vm_ioctl(self->vm, KVM_WTRACK_RING_FD, NULL);
	ASSERT_GE(self->ring_fd, 0);
	ASSERT_EQ(__vm_ioctl(self->vm, KVM_WTRACK_RING_FD, NULL), -1);
	ASSERT_EQ(errno, EBUSY);

	/* The kernel writes the mapping, userspace only reads it. */
	p = mmap(NULL, getpagesize(), PROT_READ | PROT_WRITE, MAP_SHARED, self->ring_fd, 0);
	ASSERT_EQ(p, MAP_FAILED);
	ASSERT_EQ(errno, EPERM);
	ring_map(_metadata, self);
	ASSERT_EQ(mprotect((void *)self->hdr, getpagesize(), PROT_READ | PROT_WRITE), -1);
	ASSERT_EQ(self->hdr->size, 16);
	ASSERT_EQ(self->hdr->events_offset, getpagesize());
	ASSERT_EQ(self->hdr->event_size, sizeof(struct kvm_wtrack_event));
	ASSERT_EQ(self->hdr->event_size, 64);
	ASSERT_EQ(self->hdr->pad, 0);
	ASSERT_EQ(self->hdr->features, 0);
	ASSERT_EQ(self->hdr->tail, 0);
	ASSERT_EQ(self->hdr->head, 0);
	p = mmap(NULL, self->map_size + getpagesize(), PROT_READ, MAP_SHARED, self->ring_fd, 0);
	ASSERT_EQ(p, MAP_FAILED);

	/* The fd must be closed and unmapped before the next consumer. */
	close(self->ring_fd);
	ASSERT_EQ(__vm_ioctl(self->vm, KVM_WTRACK_RING_FD, NULL), -1);
	ASSERT_EQ(errno, EBUSY);
	munmap((void *)self->hdr, self->map_size);
	self->hdr = NULL;
	fd = __vm_ioctl(self->vm, KVM_WTRACK_RING_FD, NULL);
	ASSERT_GE(fd, 0);
	self->ring_fd = fd;
}

static void *close_thread(void *arg)
{
	close((int)(long)arg);
	return NULL;
}

/*
 * The last reference to a ring file went, and its release is unprotecting
 * every page (slowed down by kvm.wtrack_delay_release_us): no protection
 * can be set, and a new consumer cannot attach before the release is
 * done, since the release would undo its protections.  Then it can.
 */
TEST_F(ring, ring_fd_is_busy_until_the_release_is_done)
{
	pthread_t closer;

	if (set_param(DELAY_RELEASE_PARAM, 1000000))
		SKIP(return, "no kvm.wtrack_delay_release_us (CONFIG_KVM_WRITE_TRACK_DEBUG=n)");
	ring_open(_metadata, self, 16);
	vm_wtrack_protect(self->vm, PAGE(0), 4 * PAGE_SIZE);
	munmap((void *)self->hdr, self->map_size);
	self->hdr = NULL;

	/* The last close runs the release, which sleeps in its thread. */
	pthread_create(&closer, NULL, close_thread, (void *)(long)self->ring_fd);
	self->ring_fd = -1;
	wait_until(__vm_wtrack(self->vm, KVM_WTRACK_PROTECT, PAGE(8), PAGE_SIZE) == -1 &&
		   errno == ENOTCONN);
	ASSERT_EQ(__vm_ioctl(self->vm, KVM_WTRACK_RING_FD, NULL), -1);
	ASSERT_EQ(errno, EBUSY);
	pthread_join(closer, NULL);

	/* Done: everything unprotected, and a new consumer attaches. */
	self->ring_fd = __vm_ioctl(self->vm, KVM_WTRACK_RING_FD, NULL);
	ASSERT_GE(self->ring_fd, 0);
	ring_map(_metadata, self);
	set_guest_writes(self->vcpus[0], PAGE(0), 4, 0x500);
	vcpu_run_start(&self->runs[0], self->vcpus[0]);
	vcpu_run_join_done(&self->runs[0]);
	ASSERT_EQ(ring_tail(self), 0);
	ASSERT_EQ(*hva(self->vm, PAGE(3)), 0x503);
}

TEST_F(ring, exit_mode_has_no_ring)
{
	ASSERT_EQ(__enable_ring(self->vm, KVM_WTRACK_ENABLE_EXIT, 16), -1);
	ASSERT_EQ(errno, EINVAL);
	ASSERT_EQ(__enable_ring(self->vm, KVM_WTRACK_ENABLE_EXIT, 0), 0);
	ASSERT_EQ(__vm_ioctl(self->vm, KVM_WTRACK_RING_FD, NULL), -1);
	ASSERT_EQ(errno, EINVAL);
}

TEST_F(ring, write_waits_for_resolve_then_lands_once)
{
	struct kvm_wtrack_event ev[4];
	uint64_t gpa = PAGE(3);

	ring_open(_metadata, self, 16);
	vm_wtrack_protect(self->vm, gpa, PAGE_SIZE);
	set_guest_writes(self->vcpus[0], gpa, 1, 0x1234);
	vcpu_run_start(&self->runs[0], self->vcpus[0]);

	/* A blocking read() is a consumer too. */
	ASSERT_EQ(read(self->ring_fd, ev, sizeof(ev)), sizeof(ev[0]));
	check_event(_metadata, ev[0], gpa, self->vcpus[0]->id, 0);
	ASSERT_EQ(self->hdr->head, 1);
	ASSERT_EQ(self->hdr->events, 1);
	check_waiting(_metadata, self->vm, &self->runs[0], gpa);

	vm_wtrack_unprotect(self->vm, gpa, PAGE_SIZE);
	vcpu_run_join_done(&self->runs[0]);
	ASSERT_EQ(*hva(self->vm, gpa), 0x1234);
	ASSERT_EQ(self->hdr->resolved, 1);
	ASSERT_EQ(self->hdr->polled, 0);
	ASSERT_EQ(ring_tail(self), 1);

	/* Nothing more to read, and poll() says so. */
	ASSERT_EQ(poll(&(struct pollfd){ .fd = self->ring_fd, .events = POLLIN }, 1, 0), 0);
	fcntl(self->ring_fd, F_SETFL, O_NONBLOCK);
	ASSERT_EQ(read(self->ring_fd, ev, sizeof(ev)), -1);
	ASSERT_EQ(errno, EAGAIN);
	ASSERT_EQ(read(self->ring_fd, ev, sizeof(ev[0]) - 1), -1);
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
		vcpu_run_start(&self->runs[i], self->vcpus[i]);
	}

	wait_until(self->hdr->coalesced == NR_VCPUS - 1);
	ASSERT_EQ(ring_tail(self), 1);
	ASSERT_EQ(poll(&(struct pollfd){ .fd = self->ring_fd, .events = POLLIN }, 1, 0), 1);
	check_event(_metadata, ring_event(self, 0), gpa, -1, 0);
	for (i = 0; i < NR_VCPUS; i++)
		check_waiting(_metadata, self->vm, &self->runs[i], gpa);

	/* One resolve releases them all. */
	vm_wtrack_unprotect(self->vm, gpa, PAGE_SIZE);
	for (i = 0; i < NR_VCPUS; i++)
		vcpu_run_join_done(&self->runs[i]);
	ASSERT_EQ(self->hdr->resolved, 1);
	ASSERT_EQ(ring_tail(self), 1);
}

static void sigusr1(int sig)
{
}

TEST_F(ring, signal_ends_the_wait_and_the_write_is_retried)
{
	struct sigaction sa = { .sa_handler = sigusr1 };
	struct vcpu_run *run = &self->runs[0];
	uint64_t gpa = PAGE(9) + 0x48;

	ASSERT_EQ(sigaction(SIGUSR1, &sa, NULL), 0);
	ring_open(_metadata, self, 16);
	vm_wtrack_protect(self->vm, PAGE(9), PAGE_SIZE);
	set_guest_writes(self->vcpus[0], gpa, 1, 0x5678);
	vcpu_run_start(run, self->vcpus[0]);
	wait_until(ring_tail(self) == 1);
	check_event(_metadata, ring_event(self, 0), gpa, self->vcpus[0]->id, 0);
	check_waiting(_metadata, self->vm, run, gpa);

	pthread_kill(run->thread, SIGUSR1);
	pthread_join(run->thread, NULL);
	ASSERT_EQ(run->r, -1);
	ASSERT_EQ(run->err, EINTR);
	ASSERT_EQ(self->vcpus[0]->run->exit_reason, KVM_EXIT_INTR);
	ASSERT_EQ(*hva(self->vm, gpa), PATTERN);

	/* The page's event is still unresolved: the retry joins it. */
	vcpu_run_start(run, self->vcpus[0]);
	wait_until(self->hdr->coalesced == 1);
	ASSERT_EQ(ring_tail(self), 1);
	check_waiting(_metadata, self->vm, run, gpa);

	vm_wtrack_unprotect(self->vm, PAGE(9), PAGE_SIZE);
	vcpu_run_join_done(run);
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
	struct vcpu_run *run = &self->runs[0];
	cpu_set_t set;

	if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
		SKIP(return, "a polling vCPU needs a CPU of its own");
	pin_to_cpu(&set, 0);
	ASSERT_EQ(sched_setaffinity(0, sizeof(set), &set), 0);
	ASSERT_EQ(sigaction(SIGUSR1, &sa, NULL), 0);
	ASSERT_EQ(set_poll_ns(3000000000u), 0);
	ring_open(_metadata, self, 16);
	vm_wtrack_protect(self->vm, PAGE(0), 4 * PAGE_SIZE);

	/*
	 * Resolve each page at once.  Even so, another task that wants the
	 * CPU ends a poll early, so of three tries one must see the resolve.
	 */
	set_guest_writes(self->vcpus[0], PAGE(0), 3, 0x31);
	vcpu_run_start_on(run, self->vcpus[0], 1);
	for (int i = 0; i < 3; i++) {
		while (ring_tail(self) != i + 1)
			;
		vm_wtrack_unprotect(self->vm, PAGE(i), PAGE_SIZE);
	}
	vcpu_run_join_done(run);
	ASSERT_GE(self->hdr->polled, 1);

	run = &self->runs[1];
	set_guest_writes(self->vcpus[1], PAGE(3), 1, 0x32);
	vcpu_run_start_on(run, self->vcpus[1], 1);
	wait_until(ring_tail(self) == 4);
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
	vcpu_run_start(&self->runs[0], self->vcpus[0]);

	while (seen < size) {
		wait_until(ring_tail(self) > seen);
		vm_wtrack_unprotect(self->vm, PAGE(seen), PAGE_SIZE);
		seen++;
	}
	wait_until(self->hdr->space_waits == 1);
	ASSERT_EQ(ring_tail(self), size);
	check_waiting(_metadata, self->vm, &self->runs[0], PAGE(size));

	ASSERT_EQ(read(self->ring_fd, ev, sizeof(ev)), sizeof(ev));
	for (i = 0; i < size; i++)
		check_event(_metadata, ev[i], PAGE(i), self->vcpus[0]->id, i);

	while (seen < n) {
		wait_until(ring_tail(self) > seen);
		check_event(_metadata, ring_event(self, seen), PAGE(seen),
			    self->vcpus[0]->id, seen);
		vm_wtrack_unprotect(self->vm, PAGE(seen), PAGE_SIZE);
		seen++;
	}
	vcpu_run_join_done(&self->runs[0]);
	for (i = 0; i < n; i++)
		ASSERT_EQ(*hva(self->vm, PAGE(i)), 0x1000 + i);
	ASSERT_EQ(self->hdr->events, n);
}

TEST_F(ring, deleted_memslot_releases_the_waiter)
{
	struct vcpu_run *run = &self->runs[0];
	uint64_t gpa = PAGE(5);

	ring_open(_metadata, self, 16);
	vm_wtrack_protect(self->vm, gpa, PAGE_SIZE);
	set_guest_writes(self->vcpus[0], gpa, 1, 0x42);
	vcpu_run_start(run, self->vcpus[0]);
	wait_until(ring_tail(self) == 1);
	check_waiting(_metadata, self->vm, run, gpa);

	/* The write retries into unbacked memory: MMIO for userspace. */
	vm_mem_region_delete(self->vm, DATA_SLOT);
	pthread_join(run->thread, NULL);
	ASSERT_EQ(run->r, 0);
	TEST_ASSERT_KVM_EXIT_REASON(self->vcpus[0], KVM_EXIT_MMIO);
	ASSERT_EQ(self->vcpus[0]->run->mmio.phys_addr, gpa);
	ASSERT_TRUE(self->vcpus[0]->run->mmio.is_write);
	ASSERT_EQ(self->hdr->resolved, 1);
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
	vcpu_run_start(&self->runs[0], self->vcpus[0]);
	vcpu_run_join_done(&self->runs[0]);

	ASSERT_EQ(read(self->ring_fd, &ev, sizeof(ev)), sizeof(ev));
	ASSERT_EQ(ev.gpa, page);
	ASSERT_EQ(ev.size, PAGE_SIZE);
	ASSERT_EQ(ev.flags, KVM_WTRACK_EVENT_LANDED);
	ASSERT_EQ(ev.vcpu_id, self->vcpus[0]->id);
	ASSERT_EQ(ev.seq, 0);
	for (int i = 0; i < ARRAY_SIZE(ev.reserved); i++)
		ASSERT_EQ(ev.reserved[i], 0);
	ASSERT_EQ(self->hdr->events, 1);

	/* The report ended the page's protection: a guest write goes through. */
	set_guest_writes(self->vcpus[1], page + 0x800, 1, 0x99);
	vcpu_run_start(&self->runs[1], self->vcpus[1]);
	vcpu_run_join_done(&self->runs[1]);
	ASSERT_EQ(*hva(self->vm, page + 0x800), 0x99);
	ASSERT_EQ(ring_tail(self), 1);
	ASSERT_EQ(self->hdr->resolved, 0);
}

/* Answer a KVM_EXIT_IO of guest_insb() with bytes 0xd0 + n, 0xd1 + n... */
static int give_port_bytes(struct __test_metadata *_metadata,
			   struct kvm_vcpu *vcpu, int n)
{
	struct kvm_run *run = vcpu->run;

	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
	ASSERT_EQ(run->io.port, IO_PORT);
	ASSERT_EQ(run->io.direction, KVM_EXIT_IO_IN);
	ASSERT_EQ(run->io.size, 1);
	for (uint32_t i = 0; i < run->io.count; i++)
		((uint8_t *)run + run->io.data_offset)[i] = 0xd0 + n + i;
	return run->io.count;
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
	given = give_port_bytes(_metadata, vcpu, 0);
	ASSERT_EQ(given, 8);
	vm_wtrack_protect(self->vm, PAGE(3), PAGE_SIZE);

	vcpu->run->immediate_exit = 1;
	ASSERT_EQ(__vcpu_run(vcpu), -1);
	ASSERT_EQ(errno, EINTR);
	ASSERT_EQ(ring_tail(self), 1);
	check_event(_metadata, ring_event(self, 0), gpa, vcpu->id, 0);
	for (int i = 0; i < 16; i++)
		ASSERT_EQ(data[i], 0x6f);

	/* Again: the completion is still there, and joins its event. */
	ASSERT_EQ(__vcpu_run(vcpu), -1);
	ASSERT_EQ(errno, EINTR);
	ASSERT_EQ(ring_tail(self), 1);
	ASSERT_EQ(self->hdr->coalesced, 1);
	ASSERT_EQ(data[0], 0x6f);

	/* Resolved: the held bytes land, and the rest is read once. */
	vm_wtrack_unprotect(self->vm, PAGE(3), PAGE_SIZE);
	vcpu->run->immediate_exit = 0;
	vcpu_run(vcpu);
	given += give_port_bytes(_metadata, vcpu, given);
	ASSERT_EQ(given, 16);
	vcpu_run(vcpu);
	ASSERT_EQ(get_ucall(vcpu, NULL), UCALL_DONE);
	for (int i = 0; i < 16; i++)
		ASSERT_EQ(data[i], 0xd0 + i);
	ASSERT_EQ(ring_tail(self), 1);
}

/* An io_uring for the ring's commands, which need 128-byte SQEs. */
static int uring_init(struct io_uring *uring, unsigned int entries)
{
	struct io_uring_params p = { .flags = IORING_SETUP_SQE128 };

	return io_uring_queue_init_params(entries, uring, &p);
}

/* io_uring: submit one command on the ring fd and wait for its result. */
static int ring_cmd(struct io_uring *uring, int fd, uint32_t op, uint32_t head,
		    const struct kvm_wtrack_resolve *res, uint32_t nr)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(uring);
	struct kvm_wtrack_ring_cmd cmd = {
		.head = head,
		.nr_resolve = nr,
		.resolve_addr = (uintptr_t)res,
	};

	io_uring_prep_rw(IORING_OP_URING_CMD, sqe, fd, NULL, 0, 0);
	sqe->cmd_op = op;
	memcpy(sqe->cmd, &cmd, sizeof(cmd));
	sqe->user_data = op;
	return io_uring_submit(uring);
}

/* The next completion, within @ms milliseconds; -ETIME if none. */
static int ring_cqe(struct io_uring *uring, uint64_t *user_data, int ms)
{
	struct __kernel_timespec ts = { .tv_sec = ms / 1000,
					.tv_nsec = (ms % 1000) * 1000000L };
	struct io_uring_cqe *cqe;
	int r = io_uring_wait_cqe_timeout(uring, &cqe, &ts);

	if (r)
		return r;
	r = cqe->res;
	if (user_data)
		*user_data = cqe->user_data;
	io_uring_cqe_seen(uring, cqe);
	return r;
}

TEST_F(ring, io_uring_fetch_and_commit)
{
	struct kvm_wtrack_resolve res[KVM_WTRACK_RESOLVE_MAX + 1] = {
		{ .gpa = PAGE(2), .size = PAGE_SIZE },
	};
	struct kvm_wtrack_resolve unbacked = { .gpa = PAGE(DATA_PAGES), .size = PAGE_SIZE };
	struct io_uring uring;
	uint64_t ud = 0;
	int fd;

	ring_open(_metadata, self, 16);
	fd = self->ring_fd;
	ASSERT_EQ(uring_init(&uring, 8), 0);
	vm_wtrack_protect(self->vm, PAGE(2), PAGE_SIZE);

	/* A FETCH on an empty ring stays in flight until an event. */
	ASSERT_EQ(ring_cmd(&uring, fd, KVM_WTRACK_RING_FETCH, 0, res, 1), 1);
	ASSERT_EQ(ring_cqe(&uring, NULL, TIMEOUT_MS), -EINVAL);
	ASSERT_EQ(ring_cmd(&uring, fd, KVM_WTRACK_RING_FETCH, 0, NULL, 0), 1);
	ASSERT_EQ(ring_cqe(&uring, NULL, 200), -ETIME);
	ASSERT_EQ(ring_cmd(&uring, fd, KVM_WTRACK_RING_FETCH, 0, NULL, 0), 1);
	ASSERT_EQ(ring_cqe(&uring, NULL, TIMEOUT_MS), -EBUSY);

	set_guest_writes(self->vcpus[0], PAGE(2), 1, 0x77);
	vcpu_run_start(&self->runs[0], self->vcpus[0]);
	ASSERT_EQ(ring_cqe(&uring, &ud, TIMEOUT_MS), 1);
	ASSERT_EQ(ud, KVM_WTRACK_RING_FETCH);
	check_event(_metadata, ring_event(self, 0), PAGE(2), self->vcpus[0]->id, 0);

	/* Bad commands fail and change nothing. */
	ASSERT_EQ(ring_cmd(&uring, fd, KVM_WTRACK_RING_COMMIT, 2, res, 1), 1);
	ASSERT_EQ(ring_cqe(&uring, NULL, TIMEOUT_MS), -EINVAL);
	ASSERT_EQ(ring_cmd(&uring, fd, KVM_WTRACK_RING_COMMIT, 1, res,
			   KVM_WTRACK_RESOLVE_MAX + 1), 1);
	ASSERT_EQ(ring_cqe(&uring, NULL, TIMEOUT_MS), -EINVAL);
	ASSERT_EQ(ring_cmd(&uring, fd, KVM_WTRACK_RING_COMMIT, 1, (void *)8, 1), 1);
	ASSERT_EQ(ring_cqe(&uring, NULL, TIMEOUT_MS), -EFAULT);
	res[1] = (struct kvm_wtrack_resolve){ .gpa = PAGE(2) + 1, .size = PAGE_SIZE };
	ASSERT_EQ(ring_cmd(&uring, fd, KVM_WTRACK_RING_COMMIT, 1, res, 2), 1);
	ASSERT_EQ(ring_cqe(&uring, NULL, TIMEOUT_MS), -EINVAL);
	ASSERT_EQ(ring_cmd(&uring, fd, 0xdead, 1, NULL, 0), 1);
	ASSERT_EQ(ring_cqe(&uring, NULL, TIMEOUT_MS), -ENOTTY);
	ASSERT_EQ(self->hdr->head, 0);
	check_waiting(_metadata, self->vm, &self->runs[0], PAGE(2));

	/*
	 * Resolve, hand the entry back and wait for more, in one command.
	 * A range without a memslot is skipped, not refused.
	 */
	res[1] = unbacked;
	ASSERT_EQ(ring_cmd(&uring, fd, KVM_WTRACK_RING_COMMIT_AND_FETCH, 1, res, 2), 1);
	vcpu_run_join_done(&self->runs[0]);
	ASSERT_EQ(*hva(self->vm, PAGE(2)), 0x77);
	ASSERT_EQ(self->hdr->head, 1);
	ASSERT_EQ(self->hdr->resolved, 1);
	ASSERT_EQ(ring_cqe(&uring, NULL, 200), -ETIME);

	/*
	 * Tearing the io_uring down cancels the FETCH in flight, which
	 * holds the ring's file: only then can a new consumer attach.
	 */
	io_uring_queue_exit(&uring);
	ring_close(self);
	wait_until((fd = __vm_ioctl(self->vm, KVM_WTRACK_RING_FD, NULL)) >= 0 ||
		   errno != EBUSY);
	ASSERT_GE(fd, 0);
	self->ring_fd = fd;
}

/*
 * The consumer, a process of its own, dies with vCPUs waiting on its
 * events: they go on, every page is unprotected, tracking ends.
 */
TEST_F(ring, consumer_death_releases_every_vcpu)
{
	struct io_uring uring;
	int report[2], n, i;
	pid_t child;

	ring_open(_metadata, self, 16);
	ASSERT_EQ(pipe(report), 0);
	child = fork();
	ASSERT_GE(child, 0);
	if (!child) {
		/*
		 * Wait for both events, tell the parent, never resolve; die
		 * with a FETCH in flight.
		 */
		if (uring_init(&uring, 4) ||
		    ring_cmd(&uring, self->ring_fd, KVM_WTRACK_RING_FETCH, 0, NULL, 0) != 1 ||
		    ring_cqe(&uring, NULL, TIMEOUT_MS) < 1)
			_exit(1);
		wait_until(ring_tail(self) == NR_VCPUS);
		n = ring_tail(self);
		if (ring_cmd(&uring, self->ring_fd, KVM_WTRACK_RING_FETCH, n, NULL, 0) != 1 ||
		    write(report[1], &n, sizeof(n)) != sizeof(n))
			_exit(1);
		pause();
		_exit(0);
	}
	/* Only the child holds the ring now. */
	ring_close(self);

	for (i = 0; i < NR_VCPUS; i++) {
		vm_wtrack_protect(self->vm, PAGE(20 + i), PAGE_SIZE);
		set_guest_writes(self->vcpus[i], PAGE(20 + i), 1, 0x900 + i);
		vcpu_run_start(&self->runs[i], self->vcpus[i]);
	}
	ASSERT_EQ(read(report[0], &n, sizeof(n)), sizeof(n));
	ASSERT_EQ(n, NR_VCPUS);
	for (i = 0; i < NR_VCPUS; i++)
		check_waiting(_metadata, self->vm, &self->runs[i], PAGE(20 + i));

	kill(child, SIGKILL);
	ASSERT_EQ(waitpid(child, NULL, 0), child);
	for (i = 0; i < NR_VCPUS; i++) {
		vcpu_run_join_done(&self->runs[i]);
		ASSERT_EQ(*hva(self->vm, PAGE(20 + i)), 0x900 + i);
	}

	/* Tracking ended; a new consumer can start it again. */
	wait_until(__vm_wtrack(self->vm, KVM_WTRACK_PROTECT, PAGE(0), PAGE_SIZE) == -1 &&
		   errno == ENOTCONN);
	self->ring_fd = __vm_ioctl(self->vm, KVM_WTRACK_RING_FD, NULL);
	ASSERT_GE(self->ring_fd, 0);
	vm_wtrack_protect(self->vm, PAGE(0), PAGE_SIZE);
}

/*
 * The VM fd closed while a vCPU waits: the ring keeps the VM alive, and
 * its consumer can still resolve.  Nothing leaks or hangs after.
 */
TEST_F(ring, vm_fd_closed_with_a_waiter)
{
	struct kvm_wtrack_resolve res = { .gpa = PAGE(4), .size = PAGE_SIZE };
	struct io_uring uring;

	ring_open(_metadata, self, 16);
	ASSERT_EQ(uring_init(&uring, 4), 0);
	vm_wtrack_protect(self->vm, PAGE(4), PAGE_SIZE);
	set_guest_writes(self->vcpus[0], PAGE(4), 1, 0xabc);
	vcpu_run_start(&self->runs[0], self->vcpus[0]);
	wait_until(ring_tail(self) == 1);

	ASSERT_EQ(close(self->vm->fd), 0);
	check_waiting(_metadata, self->vm, &self->runs[0], PAGE(4));

	ASSERT_EQ(ring_cmd(&uring, self->ring_fd, KVM_WTRACK_RING_COMMIT, 1, &res, 1), 1);
	ASSERT_EQ(ring_cqe(&uring, NULL, TIMEOUT_MS), 0);
	vcpu_run_join_done(&self->runs[0]);
	ASSERT_EQ(*hva(self->vm, PAGE(4)), 0xabc);
	io_uring_queue_exit(&uring);

	/* kvm_vm_free() would use the closed fd: release by hand. */
	for (int i = 0; i < NR_VCPUS; i++)
		close(self->vcpus[i]->fd);
	ring_close(self);
	self->vm = NULL;
}

/* A VMM killed with vCPUs waiting: its process goes away promptly. */
TEST_F(ring, vmm_killed_with_waiters_exits)
{
	int status, ms;
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
			vcpu_run_start(&self->runs[i], self->vcpus[i]);
		}
		wait_until(ring_tail(self) == NR_VCPUS);
		kill(getpid(), SIGKILL);
	}

	for (ms = 0; ms < TIMEOUT_MS && waitpid(child, &status, WNOHANG) != child; ms++)
		msleep(1);
	ASSERT_LT(ms, TIMEOUT_MS);
	ASSERT_TRUE(WIFSIGNALED(status));
	ASSERT_EQ(WTERMSIG(status), SIGKILL);
}

TEST_HARNESS_MAIN
