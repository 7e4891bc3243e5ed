// SPDX-License-Identifier: GPL-2.0
/*
 * Writes KVM makes to guest memory on its own cannot be stopped and
 * retried like a guest's: when one lands on a protected page, the next
 * KVM_RUN fails with EFAULT and a KVM_EXIT_MEMORY_FAULT that names the
 * page and is flagged as landed, the page is no longer protected, and the
 * KVM_RUN after it goes on with the guest.  Here: the kvmclock and steal-time areas, which KVM updates when
 * the guest enables them and again later.  vmcb12 is in wtrack_nested_test.
 */
#include "kvm_util.h"
#include "processor.h"
#include "kselftest_harness.h"
#include "wtrack_util.h"

#define DATA_GPA	0xc0000000ULL
#define DATA_SLOT	1
#define DATA_PAGES	4
#define PAGE(n)		(DATA_GPA + (n) * PAGE_SIZE)
#define FILL		0x6f

/* Set by the host before each run, with sync_global_to_guest(). */
static uint64_t guest_msr, guest_val;

static void guest_code(void)
{
	for (;;) {
		wrmsr(READ_ONCE(guest_msr), READ_ONCE(guest_val));
		GUEST_SYNC(0);
	}
}

FIXTURE(landed) {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
};

FIXTURE_SETUP(landed)
{
	TEST_REQUIRE(kvm_check_cap(KVM_CAP_X86_WRITE_TRACK) & KVM_WTRACK_ENABLE_EXIT);

	self->vm = vm_create_with_one_vcpu(&self->vcpu, guest_code);
	vm_userspace_mem_region_add(self->vm, VM_MEM_SRC_ANONYMOUS, DATA_GPA,
				    DATA_SLOT, DATA_PAGES, 0);
	memset(addr_gpa2hva(self->vm, DATA_GPA), FILL, DATA_PAGES * PAGE_SIZE);
	vm_enable_wtrack(self->vm, KVM_WTRACK_ENABLE_EXIT);
}

FIXTURE_TEARDOWN(landed)
{
	kvm_vm_free(self->vm);
}

static void set_guest_wrmsr(struct kvm_vm *vm, uint64_t msr, uint64_t val)
{
	guest_msr = msr;
	guest_val = val;
	sync_global_to_guest(vm, guest_msr);
	sync_global_to_guest(vm, guest_val);
}

static bool page_changed(struct kvm_vm *vm, uint64_t gpa)
{
	uint8_t *p = addr_gpa2hva(vm, gpa);

	for (int i = 0; i < PAGE_SIZE; i++)
		if (p[i] != FILL)
			return true;
	return false;
}

/*
 * Enable a KVM-written area in a protected page: its write lands and is
 * reported once, which ends the page's protection, and the guest goes on.
 * KVM writes the area again on later runs (steal time on every one): no
 * more reports, and the guest's own writes to the page go through.
 */
static void check_area(struct kvm_vm *vm, struct kvm_vcpu *vcpu, uint64_t msr,
		       uint64_t page, uint64_t enable)
{
	vm_wtrack_protect(vm, page, PAGE_SIZE);
	set_guest_wrmsr(vm, msr, page | enable);
	TEST_ASSERT_EQ(vcpu_run_count_landed(vcpu, page, UCALL_SYNC), 1);
	TEST_ASSERT(page_changed(vm, page), "nothing landed in 0x%lx", page);

	TEST_ASSERT_EQ(vcpu_run_count_landed(vcpu, page, UCALL_SYNC), 0);
	TEST_ASSERT_EQ(vcpu_run_count_landed(vcpu, page, UCALL_SYNC), 0);
}

TEST_F(landed, kvmclock_update_is_reported)
{
	check_area(self->vm, self->vcpu, MSR_KVM_SYSTEM_TIME_NEW, PAGE(1), 1);
}

TEST_F(landed, steal_time_update_is_reported)
{
	check_area(self->vm, self->vcpu, MSR_KVM_STEAL_TIME, PAGE(2),
		   KVM_MSR_ENABLED);
}

/* A write KVM makes to an unprotected page is not reported. */
TEST_F(landed, unprotected_area_is_not_reported)
{
	vm_wtrack_protect(self->vm, PAGE(3), PAGE_SIZE);
	set_guest_wrmsr(self->vm, MSR_KVM_SYSTEM_TIME_NEW, PAGE(1) | 1);
	ASSERT_EQ(vcpu_run_count_landed(self->vcpu, PAGE(3), UCALL_SYNC), 0);
	ASSERT_TRUE(page_changed(self->vm, PAGE(1)));
}

TEST_HARNESS_MAIN
