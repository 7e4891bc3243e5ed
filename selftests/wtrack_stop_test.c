// SPDX-License-Identifier: GPL-2.0
/*
 * A write stopped before it lands leaves no trace, and its instruction's
 * retry reports the same, in exit mode:
 *
 * - KVM's emulator tests the page it will write with a page walk that
 *   sets no accessed or dirty bit in the guest's page tables;
 * - PUSH and CALL with an MMIO operand are stopped before they read it,
 *   so that the retry does not read it again;
 * - an instruction stopped in the emulator (after the forced-emulation
 *   prefix) and retried by the CPU, which faults in the MMU, is reported
 *   with the same gpa and size both times.
 */
#include "kvm_util.h"
#include "processor.h"
#include "kselftest_harness.h"
#include "wtrack_ring_util.h"

#define DATA_GPA	0xc0000000ULL
#define DATA_SLOT	1
#define DATA_PAGES	4
#define PAGE(n)		(DATA_GPA + (n) * PAGE_SIZE)
#define MMIO_GPA	0xd0000000ULL	/* no memslot: MMIO */
#define FEP_PARAM	"force_emulation_prefix"

enum guest_op { OP_FEP_MOV, OP_PUSH_MMIO, OP_CALL_MMIO };

/* Set by the host before each run, with sync_global_to_guest(). */
static uint64_t guest_op, guest_addr, guest_stack;
static uint64_t called;

static void guest_called(void)
{
	called++;
}

static void guest_code(void)
{
	for (;;) {
		GUEST_SYNC(0);
		switch (READ_ONCE(guest_op)) {
		case OP_FEP_MOV:
			asm volatile(KVM_FEP "movq %0, (%1)"
				     : : "r"(0x1234ULL), "r"(guest_addr) : "memory");
			break;
		case OP_PUSH_MMIO:
			/* On a stack of the host's choosing; the old one in r12. */
			asm volatile("mov %%rsp, %%r12\n\t"
				     "mov %[top], %%rsp\n\t"
				     "pushq (%[mmio])\n\t"
				     "mov %%r12, %%rsp"
				     : : [top] "r"(guest_stack), [mmio] "r"(guest_addr)
				     : "r12", "memory");
			break;
		case OP_CALL_MMIO:
			asm volatile("mov %%rsp, %%r12\n\t"
				     "mov %[top], %%rsp\n\t"
				     "call *(%[mmio])\n\t"
				     "mov %%r12, %%rsp"
				     : : [top] "r"(guest_stack), [mmio] "r"(guest_addr)
				     : "r12", "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9",
				       "r10", "r11", "memory");
			break;
		}
	}
}

FIXTURE(stop) {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
	int saved_fep;
};

FIXTURE_SETUP(stop)
{
	TEST_REQUIRE(kvm_check_cap(KVM_CAP_X86_WRITE_TRACK) & KVM_WTRACK_ENABLE_EXIT);
	self->vm = vm_create_with_one_vcpu(&self->vcpu, guest_code);
	vm_userspace_mem_region_add(self->vm, VM_MEM_SRC_ANONYMOUS, DATA_GPA,
				    DATA_SLOT, DATA_PAGES, 0);
	virt_map(self->vm, DATA_GPA, DATA_GPA, DATA_PAGES);
	virt_map(self->vm, MMIO_GPA, MMIO_GPA, 1);
	vm_enable_wtrack(self->vm, KVM_WTRACK_ENABLE_EXIT);
	self->saved_fep = -1;
}

FIXTURE_TEARDOWN(stop)
{
	if (self->saved_fep >= 0)
		wtrack_set_kvm_param(FEP_PARAM, self->saved_fep);
	kvm_vm_free(self->vm);
}

static int enable_fep(FIXTURE_DATA(stop) *self)
{
	self->saved_fep = get_kvm_param_integer(FEP_PARAM);
	return wtrack_set_kvm_param(FEP_PARAM, 1);
}

static void set_op(FIXTURE_DATA(stop) *self, uint64_t op, uint64_t addr, uint64_t stack)
{
	guest_op = op;
	guest_addr = addr;
	guest_stack = stack;
	sync_global_to_guest(self->vm, guest_op);
	sync_global_to_guest(self->vm, guest_addr);
	sync_global_to_guest(self->vm, guest_stack);
	vcpu_run_to_ucall(self->vcpu, UCALL_SYNC);
}

TEST_F(stop, stopped_write_sets_no_accessed_or_dirty_bit)
{
	const uint64_t ad = PTE_ACCESSED_MASK | PTE_DIRTY_MASK;
	uint64_t *pte = vm_get_page_table_entry(self->vm, PAGE(1));

	if (enable_fep(self))
		SKIP(return, "kvm.force_emulation_prefix cannot be set");

	set_op(self, OP_FEP_MOV, PAGE(1) + 0x40, 0);
	*pte &= ~ad;
	vm_wtrack_protect(self->vm, PAGE(1), PAGE_SIZE);
	vcpu_run_to_wtrack_exit(self->vcpu, PAGE(1) + 0x40);
	ASSERT_EQ(*pte & ad, 0);

	/* The write itself sets them, once it is let through. */
	vm_wtrack_unprotect(self->vm, PAGE(1), PAGE_SIZE);
	vcpu_run_to_ucall(self->vcpu, UCALL_SYNC);
	ASSERT_EQ(*pte & ad, ad);
	ASSERT_EQ(*(uint64_t *)addr_gpa2hva(self->vm, PAGE(1) + 0x40), 0x1234);
}

TEST_F(stop, retry_in_hardware_reports_the_same)
{
	if (enable_fep(self))
		SKIP(return, "kvm.force_emulation_prefix cannot be set");

	set_op(self, OP_FEP_MOV, PAGE(2) + 0x10, 0);
	vm_wtrack_protect(self->vm, PAGE(2), PAGE_SIZE);
	/* Stopped in the emulator, then retried without the prefix. */
	vcpu_run_to_wtrack_exit(self->vcpu, PAGE(2) + 0x10);
	vcpu_run_to_wtrack_exit(self->vcpu, PAGE(2) + 0x10);
	vm_wtrack_unprotect(self->vm, PAGE(2), PAGE_SIZE);
	vcpu_run_to_ucall(self->vcpu, UCALL_SYNC);
	ASSERT_EQ(*(uint64_t *)addr_gpa2hva(self->vm, PAGE(2) + 0x10), 0x1234);
}

/*
 * Run the MMIO instruction to its end, serving its MMIO reads with @val
 * and unprotecting the stack when it stops there.  Returns how many times
 * it read the MMIO.
 */
static int run_mmio_insn(struct __test_metadata *_metadata,
			 FIXTURE_DATA(stop) *self, uint64_t val)
{
	struct kvm_run *run = self->vcpu->run;
	struct ucall uc;
	int reads = 0, stops = 0;

	for (;;) {
		int r = _vcpu_run(self->vcpu);

		if (r == -1 && errno == EFAULT) {
			ASSERT_EQ(run->exit_reason, KVM_EXIT_MEMORY_FAULT);
			ASSERT_TRUE(run->memory_fault.flags & KVM_MEMORY_EXIT_FLAG_WRITE_TRACK);
			ASSERT_EQ(run->memory_fault.gpa & ~(PAGE_SIZE - 1), PAGE(3));
			ASSERT_EQ(stops++, 0);
			vm_wtrack_unprotect(self->vm, PAGE(3), PAGE_SIZE);
			continue;
		}
		ASSERT_EQ(r, 0);
		if (run->exit_reason == KVM_EXIT_MMIO) {
			ASSERT_FALSE(run->mmio.is_write);
			ASSERT_EQ(run->mmio.phys_addr, MMIO_GPA);
			ASSERT_EQ(run->mmio.len, 8);
			memcpy(run->mmio.data, &val, 8);
			reads++;
			continue;
		}
		ASSERT_EQ(run->exit_reason, KVM_EXIT_IO);
		if (get_ucall(self->vcpu, &uc) == UCALL_ABORT)
			REPORT_GUEST_ASSERT(uc);
		ASSERT_EQ(uc.cmd, UCALL_SYNC);
		ASSERT_EQ(stops, 1);
		return reads;
	}
}

TEST_F(stop, push_from_mmio_reads_it_once)
{
	set_op(self, OP_PUSH_MMIO, MMIO_GPA, PAGE(4));
	vm_wtrack_protect(self->vm, PAGE(3), PAGE_SIZE);
	ASSERT_EQ(run_mmio_insn(_metadata, self, 0xabcdef), 1);
	ASSERT_EQ(*(uint64_t *)addr_gpa2hva(self->vm, PAGE(4) - 8), 0xabcdef);
}

TEST_F(stop, call_through_mmio_reads_it_once)
{
	set_op(self, OP_CALL_MMIO, MMIO_GPA, PAGE(4));
	vm_wtrack_protect(self->vm, PAGE(3), PAGE_SIZE);
	ASSERT_EQ(run_mmio_insn(_metadata, self, (uintptr_t)guest_called), 1);
	sync_global_from_guest(self->vm, called);
	ASSERT_EQ(called, 1);
}

TEST_HARNESS_MAIN
