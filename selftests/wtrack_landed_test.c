// SPDX-License-Identifier: GPL-2.0
/*
 * Writes KVM makes to guest memory on its own cannot be stopped and
 * retried like a guest's: when one lands on a protected page, the next
 * KVM_RUN returns 0 with exit reason KVM_EXIT_WTRACK_LANDED, which names
 * the page in kvm_run.wtrack_landed; the page is no longer protected, and
 * the KVM_RUN after it goes on with the guest.  It is not a fault: no
 * EFAULT, and no KVM_EXIT_MEMORY_FAULT.  Here: the kvmclock and steal-time
 * areas, which KVM updates when the guest enables them and again later,
 * Hyper-V hypercall pages, and a task switch.  vmcb12 is in
 * wtrack_nested_test.
 */
#include "kvm_util.h"
#include "processor.h"
#include "hyperv.h"
#include "kselftest_harness.h"
#include "wtrack_util.h"

#define DATA_GPA	0xc0000000ULL
#define DATA_SLOT	1
#define DATA_PAGES	32
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

/*
 * KVM's own writes to more pages than a vCPU queues: every page is named
 * all the same, once (the reporter scans for those the queue left out).
 * Before, one report said that some pages were not named, and those kept
 * their protection.  The writes here are Hyper-V hypercall pages, which
 * KVM fills in as soon as HV_X64_MSR_HYPERCALL is set, in the vCPU ioctl.
 */
#define HV_HYPERCALL_ENABLE	BIT_ULL(0)
#define MANY			(16 + 4)

static void set_hypercall_page(struct kvm_vcpu *vcpu, uint64_t gpa)
{
	vcpu_set_msr(vcpu, HV_X64_MSR_HYPERCALL, gpa | HV_HYPERCALL_ENABLE);
}

TEST_F(landed, more_than_queued_are_all_named)
{
	struct kvm_wtrack_landed_exit *l = &self->vcpu->run->wtrack_landed;
	bool named[MANY] = {};
	int i, n;

	vcpu_set_hv_cpuid(self->vcpu);
	vcpu_set_msr(self->vcpu, HV_X64_MSR_GUEST_OS_ID, HYPERV_LINUX_OS_ID);
	vm_wtrack_protect(self->vm, PAGE(0), MANY * PAGE_SIZE);
	for (i = 0; i < MANY; i++)
		set_hypercall_page(self->vcpu, PAGE(i));

	for (n = 0; n < MANY; n++) {
		ASSERT_EQ(_vcpu_run(self->vcpu), 0);
		TEST_ASSERT_KVM_EXIT_REASON(self->vcpu, KVM_EXIT_WTRACK_LANDED);
		ASSERT_EQ(l->flags, KVM_WTRACK_EVENT_LANDED);
		ASSERT_EQ(l->size, PAGE_SIZE);
		i = (l->gpa - PAGE(0)) / PAGE_SIZE;
		ASSERT_TRUE(l->gpa >= PAGE(0) && i < MANY);
		ASSERT_FALSE(named[i]);
		named[i] = true;
		for (int r = 0; r < ARRAY_SIZE(l->reserved); r++)
			ASSERT_EQ(l->reserved[r], 0);
	}

	/* Each page's protection went with its report: no more of them. */
	set_guest_wrmsr(self->vm, HV_X64_MSR_GUEST_OS_ID, HYPERV_LINUX_OS_ID);
	set_hypercall_page(self->vcpu, PAGE(0));
	ASSERT_EQ(vcpu_run_count_landed(self->vcpu, PAGE(0), UCALL_SYNC), 0);
}

/*
 * A hardware task switch, which KVM emulates and cannot restart: the vCPU
 * runs 32-bit protected mode without paging and jumps to a TSS; saving
 * its state into the old TSS, on a protected page, lands and is reported,
 * and the new task runs.
 */
#define TS_GPA		0x10000000ULL	/* below 4 GiB, for 32-bit code */
#define TS_SLOT		2
#define TS_CODE		(TS_GPA)
#define TS_CODE2	(TS_GPA + 0x100)
#define TS_GDT		(TS_GPA + 1 * PAGE_SIZE)
#define TS_TSS1		(TS_GPA + 2 * PAGE_SIZE)
#define TS_TSS2		(TS_GPA + 3 * PAGE_SIZE)
#define TS_STACK	(TS_GPA + 5 * PAGE_SIZE)
#define SEL_CODE	0x08
#define SEL_DATA	0x10
#define SEL_TSS1	0x18
#define SEL_TSS2	0x20
#define TSS_EIP		0x20

static uint64_t gdt_entry(uint32_t base, uint32_t limit, uint8_t access, uint8_t flags)
{
	return (limit & 0xffff) | (uint64_t)(base & 0xffffff) << 16 |
	       (uint64_t)access << 40 | (uint64_t)((limit >> 16) & 0xf) << 48 |
	       (uint64_t)flags << 52 | (uint64_t)(base >> 24) << 56;
}

static struct kvm_segment flat_segment(uint16_t selector, uint8_t type)
{
	return (struct kvm_segment) {
		.limit = 0xffffffff, .selector = selector, .type = type,
		.present = 1, .db = 1, .s = 1, .g = 1,
	};
}

static void setup_task_switch(struct kvm_vm *vm, struct kvm_vcpu *vcpu)
{
	/* ljmp $SEL_TSS2, $0 */
	static const uint8_t code[] = { 0xea, 0, 0, 0, 0, SEL_TSS2, 0 };
	/* mov $0x42, %al; out %al, $0x80; hlt */
	static const uint8_t code2[] = { 0xb0, 0x42, 0xe6, 0x80, 0xf4 };
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	uint32_t *tss2;
	uint64_t *gdt;

	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, TS_GPA, TS_SLOT, 8, 0);
	tss2 = addr_gpa2hva(vm, TS_TSS2);
	gdt = addr_gpa2hva(vm, TS_GDT);
	memset(addr_gpa2hva(vm, TS_GPA), 0, 8 * PAGE_SIZE);
	memcpy(addr_gpa2hva(vm, TS_CODE), code, sizeof(code));
	memcpy(addr_gpa2hva(vm, TS_CODE2), code2, sizeof(code2));

	gdt[SEL_CODE / 8] = gdt_entry(0, 0xfffff, 0x9b, 0xc);
	gdt[SEL_DATA / 8] = gdt_entry(0, 0xfffff, 0x93, 0xc);
	gdt[SEL_TSS1 / 8] = gdt_entry(TS_TSS1, 0x67, 0x8b, 0);	/* busy */
	gdt[SEL_TSS2 / 8] = gdt_entry(TS_TSS2, 0x67, 0x89, 0);	/* available */

	tss2[TSS_EIP / 4] = TS_CODE2;
	tss2[0x24 / 4] = 0x2;				/* eflags */
	tss2[0x38 / 4] = TS_STACK;			/* esp */
	tss2[0x48 / 4] = SEL_DATA;			/* es */
	tss2[0x4c / 4] = SEL_CODE;			/* cs */
	tss2[0x50 / 4] = SEL_DATA;			/* ss */
	tss2[0x54 / 4] = SEL_DATA;			/* ds */

	vcpu_sregs_get(vcpu, &sregs);
	sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
	sregs.cr3 = 0;
	sregs.cr4 = 0;
	sregs.efer = 0;
	sregs.cs = flat_segment(SEL_CODE, 0xb);
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = flat_segment(SEL_DATA, 0x3);
	sregs.tr = (struct kvm_segment) {
		.base = TS_TSS1, .limit = 0x67, .selector = SEL_TSS1, .type = 0xb,
		.present = 1,
	};
	sregs.ldt = (struct kvm_segment) { .type = 0x2, .unusable = 1 };
	sregs.gdt.base = TS_GDT;
	sregs.gdt.limit = 5 * 8 - 1;
	vcpu_sregs_set(vcpu, &sregs);

	memset(&regs, 0, sizeof(regs));
	regs.rip = TS_CODE;
	regs.rflags = 0x2;
	regs.rsp = TS_STACK;
	vcpu_regs_set(vcpu, &regs);
}

TEST_F(landed, task_switch_write_is_reported)
{
	struct kvm_run *run = self->vcpu->run;
	uint32_t *tss1;
	int r;

	setup_task_switch(self->vm, self->vcpu);
	tss1 = addr_gpa2hva(self->vm, TS_TSS1);
	vm_wtrack_protect(self->vm, TS_TSS1, PAGE_SIZE);

	r = _vcpu_run(self->vcpu);

	/*
	 * A CPU that switches tasks itself, without the task-switch
	 * intercept (QEMU's SVM), writes the TSS through the MMU: that write
	 * is stopped like any guest write, and KVM's emulation, the path
	 * under test, is never reached.  Whether such a CPU can resume a
	 * task switch it faulted in is its business, not KVM's.
	 */
	if (r == -1 && errno == EFAULT && run->exit_reason == KVM_EXIT_MEMORY_FAULT) {
		ASSERT_EQ(run->memory_fault.flags, WTRACK_EXIT_FLAGS);
		ASSERT_EQ(run->memory_fault.gpa & ~(PAGE_SIZE - 1), TS_TSS1);
		ASSERT_EQ(run->memory_fault.size, wtrack_stop_size(run->memory_fault.gpa));
		ASSERT_NE(tss1[TSS_EIP / 4], TS_CODE + 7);
		SKIP(return, "the CPU switched tasks without KVM's emulation (QEMU's SVM does not intercept task switches); its TSS write was stopped instead");
	}
	ASSERT_EQ(r, 0) TH_LOG("KVM_RUN: errno %d, exit %s", errno,
			       exit_reason_str(run->exit_reason));
	assert_wtrack_landed(self->vcpu, TS_TSS1);
	ASSERT_EQ(tss1[TSS_EIP / 4], TS_CODE + 7);

	/* Nothing is retried: the new task runs. */
	vcpu_run(self->vcpu);
	TEST_ASSERT_KVM_EXIT_REASON(self->vcpu, KVM_EXIT_IO);
	ASSERT_EQ(run->io.port, 0x80);
	ASSERT_EQ(run->io.direction, KVM_EXIT_IO_OUT);
	ASSERT_EQ(*((uint8_t *)run + run->io.data_offset), 0x42);
}

TEST_HARNESS_MAIN
