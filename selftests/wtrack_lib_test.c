// SPDX-License-Identifier: GPL-2.0
/*
 * libwtrack against the real kernel: a consumer thread drains the ring
 * with wtrack_wait() and resolves with wtrack_resolve() while vCPUs write
 * protected pages, with a blocking, a busy-polling and an SQPOLL consumer;
 * the exit mode's helpers; and wtrack_close() releasing waiting vCPUs.
 * Every page's old contents must have been copied before its write landed.
 */
#include <pthread.h>
#include <signal.h>
#include <wtrack.h>

#include "kvm_util.h"
#include "processor.h"
#include "kselftest_harness.h"
#include "wtrack_util.h"

#define DATA_GPA	0xc0000000ULL
#define DATA_SLOT	1
#define NR_VCPUS	2
#define PAGES_PER_VCPU	256
#define DATA_PAGES	(NR_VCPUS * PAGES_PER_VCPU)
#define OLD		0x6f6f6f6f6f6f6f6fULL

/* Each vCPU writes each of its pages once, twice over. */
static void guest_code(uint64_t base, uint64_t npages, uint64_t val)
{
	for (int pass = 0; pass < 2; pass++)
		for (uint64_t i = 0; i < npages; i++)
			*(volatile uint64_t *)(base + i * PAGE_SIZE) = val + i;
	GUEST_DONE();
}

FIXTURE(lib) {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpus[NR_VCPUS];
	struct wtrack *wt;
	uint64_t copied[DATA_PAGES];	/* the old word of each page, copied */
	int events;
	volatile bool stop, stopped;
};

FIXTURE_VARIANT(lib) {
	unsigned int mode, flags;
};

FIXTURE_VARIANT_ADD(lib, ring_blocking) {
	.mode = WTRACK_MODE_RING,
};

FIXTURE_VARIANT_ADD(lib, ring_busy_poll) {
	.mode = WTRACK_MODE_RING,
	.flags = WTRACK_F_BUSY_POLL,
};

FIXTURE_VARIANT_ADD(lib, ring_sqpoll) {
	.mode = WTRACK_MODE_RING,
	.flags = WTRACK_F_SQPOLL | WTRACK_F_BUSY_POLL,
};

FIXTURE_VARIANT_ADD(lib, exit) {
	.mode = WTRACK_MODE_EXIT,
};

FIXTURE_SETUP(lib)
{
	struct wtrack_params p = { .mode = variant->mode, .flags = variant->flags };
	unsigned int need = variant->mode == WTRACK_MODE_RING ? KVM_WTRACK_ENABLE_RING :
								KVM_WTRACK_ENABLE_EXIT;

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_X86_WRITE_TRACK) & need);
	self->vm = vm_create_with_vcpus(NR_VCPUS, guest_code, self->vcpus);
	vm_userspace_mem_region_add(self->vm, VM_MEM_SRC_ANONYMOUS, DATA_GPA,
				    DATA_SLOT, DATA_PAGES, 0);
	virt_map(self->vm, DATA_GPA, DATA_GPA, DATA_PAGES);
	memset(addr_gpa2hva(self->vm, DATA_GPA), 0x6f, DATA_PAGES * PAGE_SIZE);
	for (int i = 0; i < NR_VCPUS; i++)
		vcpu_args_set(self->vcpus[i], 3, DATA_GPA + i * PAGES_PER_VCPU * PAGE_SIZE,
			      PAGES_PER_VCPU, 0x1000 * (i + 1));
	ASSERT_EQ(wtrack_open(self->vm->fd, &p, &self->wt), 0);
}

FIXTURE_TEARDOWN(lib)
{
	wtrack_close(self->wt);
	kvm_vm_free(self->vm);
}

/* What a lazy snapshot does with an event: copy, then let the write land. */
static void copy_and_resolve(FIXTURE_DATA(lib) *self, const struct kvm_wtrack_event *ev)
{
	uint64_t page = ev->gpa & ~(PAGE_SIZE - 1);

	TEST_ASSERT(page >= DATA_GPA && page < DATA_GPA + DATA_PAGES * PAGE_SIZE,
		    "event outside the data: 0x%llx", ev->gpa);
	/* Only the guest writes the data: every event is a stopped write. */
	TEST_ASSERT(ev->flags == 0, "flags 0x%llx", ev->flags);
	TEST_ASSERT_EQ(ev->size, PAGE_SIZE - (ev->gpa & (PAGE_SIZE - 1)));
	self->copied[(page - DATA_GPA) / PAGE_SIZE] = *(uint64_t *)addr_gpa2hva(self->vm, page);
	__atomic_fetch_add(&self->events, 1, __ATOMIC_RELAXED);
	TEST_ASSERT(!wtrack_resolve(self->wt, ev->gpa, ev->size), "wtrack_resolve");
}

static void *consumer(void *arg)
{
	FIXTURE_DATA(lib) *self = arg;
	struct kvm_wtrack_event ev[32];

	while (!self->stop) {
		int n = wtrack_wait(self->wt, ev, ARRAY_SIZE(ev));

		if (n == -EINTR)
			continue;
		TEST_ASSERT(n > 0, "wtrack_wait: %d", n);
		for (int i = 0; i < n; i++)
			copy_and_resolve(self, &ev[i]);
	}
	self->stopped = true;
	return NULL;
}

/*
 * A signal gets the consumer out of wtrack_wait(), but one that lands
 * while it spins or works is gone before it sleeps: repeat until it ends.
 */
static void stop_consumer(FIXTURE_DATA(lib) *self, pthread_t cons)
{
	self->stop = true;
	while (!self->stopped) {
		pthread_kill(cons, SIGUSR1);
		usleep(1000);
	}
	pthread_join(cons, NULL);
}

struct vcpu_thread {
	FIXTURE_DATA(lib) *self;
	struct kvm_vcpu *vcpu;
	pthread_t thread;
};

/* Run to GUEST_DONE; in exit mode, this thread is the consumer. */
static void *vcpu_thread(void *arg)
{
	struct vcpu_thread *t = arg;
	struct kvm_wtrack_event ev;
	struct ucall uc;

	for (;;) {
		int r = __vcpu_run(t->vcpu);

		/* A stopped write fails with EFAULT, a landed one returns 0. */
		if ((!r || errno == EFAULT) &&
		    wtrack_exit_event(t->vcpu->run, t->vcpu->id, &ev) == 1) {
			TEST_ASSERT_EQ(ev.vcpu_id, t->vcpu->id);
			copy_and_resolve(t->self, &ev);
			continue;
		}
		TEST_ASSERT(!r, "KVM_RUN: %d errno %d", r, errno);
		TEST_ASSERT_KVM_EXIT_REASON(t->vcpu, KVM_EXIT_IO);
		if (get_ucall(t->vcpu, &uc) == UCALL_ABORT)
			REPORT_GUEST_ASSERT(uc);
		TEST_ASSERT_EQ(uc.cmd, UCALL_DONE);
		return NULL;
	}
}

static void noop(int sig)
{
}

TEST_F(lib, every_page_copied_before_its_write)
{
	struct sigaction sa = { .sa_handler = noop };
	struct vcpu_thread t[NR_VCPUS];
	bool ring = variant->mode == WTRACK_MODE_RING;
	struct wtrack_stats st;
	pthread_t cons;
	int i;

	ASSERT_EQ(sigaction(SIGUSR1, &sa, NULL), 0);
	ASSERT_EQ(wtrack_protect(self->wt, DATA_GPA, DATA_PAGES * PAGE_SIZE), 0);
	if (ring)
		pthread_create(&cons, NULL, consumer, self);
	for (i = 0; i < NR_VCPUS; i++) {
		t[i] = (struct vcpu_thread){ .self = self, .vcpu = self->vcpus[i] };
		pthread_create(&t[i].thread, NULL, vcpu_thread, &t[i]);
	}
	for (i = 0; i < NR_VCPUS; i++)
		pthread_join(t[i].thread, NULL);
	if (ring)
		stop_consumer(self, cons);

	/* One event per page, and the copy has what was there before. */
	ASSERT_EQ(self->events, DATA_PAGES);
	for (i = 0; i < DATA_PAGES; i++) {
		ASSERT_EQ(self->copied[i], OLD);
		ASSERT_EQ(*(uint64_t *)addr_gpa2hva(self->vm, DATA_GPA + i * PAGE_SIZE),
			  0x1000 * (i / PAGES_PER_VCPU + 1) + i % PAGES_PER_VCPU);
	}
	if (!ring) {
		ASSERT_EQ(wtrack_stats(self->wt, &st), -EOPNOTSUPP);
		ASSERT_EQ(wtrack_ring_fd(self->wt), -EOPNOTSUPP);
		return;
	}
	ASSERT_EQ(wtrack_commit(self->wt), 0);
	ASSERT_EQ(wtrack_stats(self->wt, &st), 0);
	ASSERT_EQ(st.events, DATA_PAGES);
	ASSERT_EQ(st.resolved, DATA_PAGES);
	ASSERT_EQ(st.space_waits, 0);
	ASSERT_EQ(st.polled, 0);	/* kvm.wtrack_poll_ns is 0 */
	ASSERT_GE(st.resolves, 1);
}

/* Closing the handle ends tracking: a waiting vCPU goes on. */
TEST_F(lib, close_releases_a_waiting_vcpu)
{
	struct kvm_wtrack_event ev;
	struct vcpu_thread t = { .self = self, .vcpu = self->vcpus[0] };

	if (variant->mode != WTRACK_MODE_RING)
		SKIP(return, "exit mode: nothing waits in the kernel");

	ASSERT_EQ(wtrack_protect(self->wt, DATA_GPA, PAGE_SIZE), 0);
	vcpu_args_set(self->vcpus[0], 3, DATA_GPA, 1, 0x77);
	pthread_create(&t.thread, NULL, vcpu_thread, &t);
	ASSERT_EQ(wtrack_wait(self->wt, &ev, 1), 1);
	ASSERT_EQ(ev.gpa, DATA_GPA);
	ASSERT_EQ(ev.vcpu_id, self->vcpus[0]->id);
	ASSERT_EQ(*(uint64_t *)addr_gpa2hva(self->vm, DATA_GPA), OLD);

	wtrack_close(self->wt);
	self->wt = NULL;
	pthread_join(t.thread, NULL);	/* fails the test if the vCPU hangs */
	ASSERT_EQ(*(uint64_t *)addr_gpa2hva(self->vm, DATA_GPA), 0x77);
}

TEST_HARNESS_MAIN
