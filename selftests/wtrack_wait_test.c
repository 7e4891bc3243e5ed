// SPDX-License-Identifier: GPL-2.0
/*
 * The waits of ring mode end when they should, and lose nothing:
 *
 * - a vCPU waiting for ring space goes on as soon as its page is
 *   resolved, though no entry was handed back;
 * - a landed write's event that found the ring full survives a signal:
 *   KVM_RUN ends with EINTR, and the event is posted once there is room.
 *
 * KVM_RUN with immediate_exit, which never waits, is in wtrack_ring_test.
 */
#include <signal.h>

#include "kvm_util.h"
#include "processor.h"
#include "kselftest_harness.h"
#include "wtrack_ring_util.h"

#define DATA_GPA	0xc0000000ULL
#define DATA_SLOT	1
#define DATA_PAGES	32
#define PAGE(n)		(DATA_GPA + (n) * PAGE_SIZE)
#define RING_SIZE	16

enum guest_op { OP_WRITES, OP_KVMCLOCK };

/* Set by the host before each run, with sync_global_to_guest(). */
static uint64_t guest_op, guest_addr, guest_count;

static void guest_code(void)
{
	for (;;) {
		uint64_t addr = READ_ONCE(guest_addr), n = READ_ONCE(guest_count);

		switch (READ_ONCE(guest_op)) {
		case OP_WRITES:
			for (uint64_t i = 0; i < n; i++)
				*(volatile uint64_t *)(addr + i * PAGE_SIZE) = i + 1;
			break;
		case OP_KVMCLOCK:
			/* KVM writes the kvmclock area itself. */
			wrmsr(MSR_KVM_SYSTEM_TIME_NEW, addr | 1);
			break;
		}
		GUEST_SYNC(0);
	}
}

FIXTURE(wait) {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
	struct wtrack_vcpu_run run;
	struct wtrack_test_ring ring;
};

FIXTURE_SETUP(wait)
{
	TEST_REQUIRE(kvm_check_cap(KVM_CAP_X86_WRITE_TRACK) & KVM_WTRACK_ENABLE_RING);
	self->vm = vm_create_with_one_vcpu(&self->vcpu, guest_code);
	vm_userspace_mem_region_add(self->vm, VM_MEM_SRC_ANONYMOUS, DATA_GPA,
				    DATA_SLOT, DATA_PAGES, 0);
	virt_map(self->vm, DATA_GPA, DATA_GPA, DATA_PAGES);
	ASSERT_EQ(__vm_enable_wtrack_ring(self->vm, RING_SIZE), 0);
	self->ring.fd = -1;
	wtrack_ring_attach(self->vm, &self->ring);
}

FIXTURE_TEARDOWN(wait)
{
	wtrack_ring_detach(&self->ring);
	kvm_vm_free(self->vm);
}

static void set_op(FIXTURE_DATA(wait) *self, uint64_t op, uint64_t addr, uint64_t n)
{
	guest_op = op;
	guest_addr = addr;
	guest_count = n;
	sync_global_to_guest(self->vm, guest_op);
	sync_global_to_guest(self->vm, guest_addr);
	sync_global_to_guest(self->vm, guest_count);
}

/*
 * Fill the ring: @n pages from PAGE(0) are written, each event's page is
 * resolved as it comes, but no entry is handed back.  The vCPU runs in
 * the fixture's thread and goes on to write page @n, for which there is
 * no room.
 */
static void fill_ring(FIXTURE_DATA(wait) *self, int n)
{
	set_op(self, OP_WRITES, PAGE(0), n + 1);
	vm_wtrack_protect(self->vm, PAGE(0), (n + 1) * PAGE_SIZE);
	wtrack_vcpu_run_start(&self->run, self->vcpu);
	for (int i = 0; i < n; i++) {
		wtrack_wait_until(wtrack_ring_tail(&self->ring) == i + 1);
		vm_wtrack_unprotect(self->vm, PAGE(i), PAGE_SIZE);
	}
	wtrack_wait_until(self->ring.hdr->space_waits >= 1);
	usleep(100 * 1000);
	TEST_ASSERT(!self->run.done, "the write to a full ring did not wait");
}

/*
 * Before, only a moving head woke a vCPU waiting for space: one whose
 * page was resolved meanwhile slept until the consumer handed entries
 * back, which it need not ever do.
 */
TEST_F(wait, space_wait_ends_when_the_page_is_resolved)
{
	fill_ring(self, RING_SIZE);
	vm_wtrack_unprotect(self->vm, PAGE(RING_SIZE), PAGE_SIZE);
	wtrack_wait_until(self->run.done);
	wtrack_vcpu_run_join(&self->run, UCALL_SYNC);
	ASSERT_EQ(*(uint64_t *)addr_gpa2hva(self->vm, PAGE(RING_SIZE)), RING_SIZE + 1);
	ASSERT_EQ(wtrack_ring_tail(&self->ring), RING_SIZE);
}

static void sigusr1(int sig)
{
}

/*
 * Before, a landed write's report left its queue (and its page's
 * protection went) before the event was posted: a signal during the
 * wait for space dropped it.
 */
TEST_F(wait, landed_event_survives_a_signal_on_a_full_ring)
{
	struct sigaction sa = { .sa_handler = sigusr1 };
	struct kvm_wtrack_event ev[RING_SIZE];
	struct kvm_wtrack_event landed;
	uint64_t clock = PAGE(20);

	ASSERT_EQ(sigaction(SIGUSR1, &sa, NULL), 0);
	fill_ring(self, RING_SIZE);
	/* Let the write through: the ring stays full. */
	vm_wtrack_unprotect(self->vm, PAGE(RING_SIZE), PAGE_SIZE);
	wtrack_wait_until(self->run.done);
	wtrack_vcpu_run_join(&self->run, UCALL_SYNC);

	/* KVM writes the protected kvmclock page: its event waits for space. */
	set_op(self, OP_KVMCLOCK, clock, 0);
	vm_wtrack_protect(self->vm, clock, PAGE_SIZE);
	wtrack_vcpu_run_start(&self->run, self->vcpu);
	wtrack_wait_until(self->ring.hdr->space_waits >= 2);
	usleep(100 * 1000);
	ASSERT_FALSE(self->run.done);
	pthread_kill(self->run.thread, SIGUSR1);
	pthread_join(self->run.thread, NULL);
	ASSERT_EQ(self->run.r, -1);
	ASSERT_EQ(self->run.err, EINTR);
	ASSERT_EQ(self->vcpu->run->exit_reason, KVM_EXIT_INTR);

	/* Room again: the next KVM_RUN posts the landed event. */
	ASSERT_EQ(read(self->ring.fd, ev, sizeof(ev)), sizeof(ev));
	wtrack_vcpu_run_start(&self->run, self->vcpu);
	wtrack_vcpu_run_join(&self->run, UCALL_SYNC);
	ASSERT_EQ(wtrack_ring_tail(&self->ring), RING_SIZE + 1);
	landed = wtrack_ring_event(&self->ring, RING_SIZE);
	ASSERT_EQ(landed.flags, KVM_WTRACK_EVENT_LANDED);
	ASSERT_EQ(landed.gpa, clock);
	ASSERT_EQ(landed.size, PAGE_SIZE);
}

TEST_HARNESS_MAIN
