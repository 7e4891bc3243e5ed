// SPDX-License-Identifier: GPL-2.0
/*
 * Writes racing KVM_WTRACK_PROTECT, in exit mode.  Two promises:
 *
 * - Once a write to a protected page was reported, the page does not
 *   change until it is unprotected: no vCPU writes it through a TLB entry
 *   from before the protection.  Clearing an SPTE's MMU-writable bit must
 *   be flushed before mmu_lock is dropped; before, a ranged protect
 *   flushed after, and a vCPU faulting on the page in between was
 *   reported while another one kept writing it.  Where the CPU drops
 *   its TLB entries on every exit (QEMU's emulation does), no stale
 *   write shows, so the order itself is checked too: by the time a stop
 *   is reported, the protect has flushed (the VM's remote_tlb_flush_requests
 *   statistic).
 * - When KVM_WTRACK_PROTECT returns, no write to the range lands
 *   unreported: not even one that KVM's instruction emulator tested
 *   before the protection and had not made yet.
 *
 * The windows are widened with kvm.wtrack_delay_protect_us (after each
 * chunk of a protect, mmu_lock dropped) and
 * kvm.wtrack_delay_emulated_write_us (between the emulator's test of a
 * page and its write), which only a kernel with
 * CONFIG_KVM_WRITE_TRACK_DEBUG has: without them the cases skip.
 */
#include "kvm_util.h"
#include "processor.h"
#include "kselftest_harness.h"
#include "wtrack_ring_util.h"

#define DATA_GPA	0xc0000000ULL
#define DATA_SLOT	1
#define DATA_PAGES	4
#define FEP_PARAM	"force_emulation_prefix"
#define TRIALS		4

/*
 * vCPU 0 increments the page's first word as fast as it can, always
 * through the same TLB entry; vCPU 1 writes the page's second half, each
 * time through a fresh page walk (INVLPG), so it faults as soon as the
 * SPTE is read-only.
 */
static void guest_code(uint64_t gpa, uint64_t fresh)
{
	volatile uint64_t *p = (void *)gpa;

	for (;;) {
		if (fresh) {
			asm volatile("invlpg (%0)" : : "r"(p) : "memory");
			p[256] = 1;
		} else {
			p[0]++;
		}
	}
}

/* Increments of the page's first word, each by KVM's emulator. */
static void guest_code_emulated(uint64_t gpa)
{
	for (;;)
		asm volatile(KVM_FEP "incq (%0)" : : "r"(gpa) : "memory");
}

FIXTURE(race) {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpus[2];
	int saved_fep;
};

FIXTURE_SETUP(race)
{
	TEST_REQUIRE(kvm_check_cap(KVM_CAP_X86_WRITE_TRACK) & KVM_WTRACK_ENABLE_EXIT);
	self->saved_fep = -1;
}

FIXTURE_TEARDOWN(race)
{
	if (wtrack_have_delay("protect"))
		wtrack_set_delay("protect", 0);
	if (wtrack_have_delay("emulated_write"))
		wtrack_set_delay("emulated_write", 0);
	if (self->saved_fep >= 0)
		wtrack_set_kvm_param(FEP_PARAM, self->saved_fep);
	if (self->vm)
		kvm_vm_free(self->vm);
}

static void vm_setup(FIXTURE_DATA(race) *self, void *code, int nr_vcpus)
{
	self->vm = vm_create_with_vcpus(nr_vcpus, code, self->vcpus);
	vm_userspace_mem_region_add(self->vm, VM_MEM_SRC_ANONYMOUS, DATA_GPA,
				    DATA_SLOT, DATA_PAGES, 0);
	virt_map(self->vm, DATA_GPA, DATA_GPA, DATA_PAGES);
	vm_enable_wtrack(self->vm, KVM_WTRACK_ENABLE_EXIT);
}

static uint64_t page_word(struct kvm_vm *vm)
{
	return __atomic_load_n((uint64_t *)addr_gpa2hva(vm, DATA_GPA), __ATOMIC_SEQ_CST);
}

/* A KVM_RUN that ends with the write-tracking stop. */
struct stopped_run {
	struct kvm_vcpu *vcpu;
	pthread_t thread;
	int r, err;
	/* The page's first word right when the stop came, and 20 ms later. */
	uint64_t at_stop, later;
	/* The VM's TLB flushes requested so far, right when the stop came. */
	uint64_t flushes_at_stop;
};

static void *stopped_run_thread(void *arg)
{
	struct stopped_run *s = arg;

	s->r = __vcpu_run(s->vcpu);
	s->err = errno;
	s->flushes_at_stop = vm_get_stat(s->vcpu->vm, "remote_tlb_flush_requests");
	s->at_stop = page_word(s->vcpu->vm);
	usleep(20 * 1000);
	s->later = page_word(s->vcpu->vm);
	return NULL;
}

static void stopped_run_start(struct stopped_run *s, struct kvm_vcpu *vcpu)
{
	s->vcpu = vcpu;
	pthread_create(&s->thread, NULL, stopped_run_thread, s);
}

/* Join it: it must have stopped on the data page. */
static void stopped_run_join(struct __test_metadata *_metadata, struct stopped_run *s)
{
	struct kvm_run *run = s->vcpu->run;

	pthread_join(s->thread, NULL);
	ASSERT_EQ(s->r, -1)
		TH_LOG("KVM_RUN ended with exit %s", exit_reason_str(run->exit_reason));
	ASSERT_EQ(s->err, EFAULT);
	ASSERT_EQ(run->exit_reason, KVM_EXIT_MEMORY_FAULT);
	ASSERT_TRUE(run->memory_fault.flags & KVM_MEMORY_EXIT_FLAG_WRITE_TRACK);
	ASSERT_EQ(run->memory_fault.gpa & ~(PAGE_SIZE - 1), DATA_GPA);
	ASSERT_EQ(run->memory_fault.size, PAGE_SIZE - (run->memory_fault.gpa & (PAGE_SIZE - 1)));
}

TEST_F(race, no_write_lands_after_another_was_stopped)
{
	struct stopped_run writer, fresh;
	uint64_t flushes;
	int trial;

	if (!wtrack_have_delay("protect"))
		SKIP(return, "no kvm.wtrack_delay_protect_us (CONFIG_KVM_WRITE_TRACK_DEBUG)");

	vm_setup(self, guest_code, 2);
	vcpu_args_set(self->vcpus[0], 2, DATA_GPA, 0);
	vcpu_args_set(self->vcpus[1], 2, DATA_GPA, 1);
	wtrack_set_delay("protect", 100 * 1000);

	for (trial = 0; trial < TRIALS; trial++) {
		stopped_run_start(&writer, self->vcpus[0]);
		stopped_run_start(&fresh, self->vcpus[1]);
		/* The writer has had its TLB entry for a while. */
		usleep(100 * 1000);

		flushes = vm_get_stat(self->vm, "remote_tlb_flush_requests");
		vm_wtrack_protect(self->vm, DATA_GPA, PAGE_SIZE);
		stopped_run_join(_metadata, &fresh);
		stopped_run_join(_metadata, &writer);
		TH_LOG("trial %d: %lu increments after the other vCPU's stop, %lu flushes before it",
		       trial, fresh.later - fresh.at_stop, fresh.flushes_at_stop - flushes);
		ASSERT_EQ(fresh.later, fresh.at_stop);
		ASSERT_GT(fresh.flushes_at_stop, flushes);
		vm_wtrack_unprotect(self->vm, DATA_GPA, PAGE_SIZE);
	}
}

TEST_F(race, no_emulated_write_lands_after_protect)
{
	struct stopped_run s;
	uint64_t before, after;
	int trial;

	if (!wtrack_have_delay("emulated_write"))
		SKIP(return, "no kvm.wtrack_delay_emulated_write_us (CONFIG_KVM_WRITE_TRACK_DEBUG)");
	self->saved_fep = get_kvm_param_integer(FEP_PARAM);
	if (wtrack_set_kvm_param(FEP_PARAM, 1))
		SKIP(return, "kvm.force_emulation_prefix cannot be set");

	vm_setup(self, guest_code_emulated, 1);
	vcpu_args_set(self->vcpus[0], 1, DATA_GPA);
	wtrack_set_delay("emulated_write", 200 * 1000);

	for (trial = 0; trial < TRIALS; trial++) {
		stopped_run_start(&s, self->vcpus[0]);
		/* Most likely inside an increment, tested, not written. */
		usleep(100 * 1000);

		vm_wtrack_protect(self->vm, DATA_GPA, PAGE_SIZE);
		before = page_word(self->vm);
		usleep(400 * 1000);
		after = page_word(self->vm);
		stopped_run_join(_metadata, &s);
		TH_LOG("trial %d: %lu increments after KVM_WTRACK_PROTECT returned",
		       trial, after - before);
		ASSERT_EQ(after, before);
		vm_wtrack_unprotect(self->vm, DATA_GPA, PAGE_SIZE);
	}
}

TEST_HARNESS_MAIN
