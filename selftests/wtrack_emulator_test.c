// SPDX-License-Identifier: GPL-2.0
/*
 * Writes made by KVM's instruction emulator to protected pages: each one
 * stops before any byte lands, is reported with the GPA of the first
 * protected byte it touches and the rest of that page (as the MMU's stops
 * are, whatever the access size), leaves no half-done instruction in the
 * registers, and lands once after the page is unprotected.  The instructions are forced through the
 * emulator with KVM's forced emulation prefix (kvm.force_emulation_prefix,
 * which the fixture turns on for the test's duration); string I/O is
 * always emulated.
 */
#include <stdio.h>

#include "kvm_util.h"
#include "processor.h"
#include "kselftest_harness.h"
#include "wtrack_util.h"

#define DATA_GPA	0xc0000000ULL
#define DATA_SLOT	1
#define DATA_PAGES	8
#define PAGE(n)		(DATA_GPA + (n) * PAGE_SIZE)
#define FILL		0x6f
#define PATTERN		0x6f6f6f6f6f6f6f6fULL
#define IO_PORT		0x1234
#define FEP_PARAM	"/sys/module/kvm/parameters/force_emulation_prefix"

enum guest_op { OP_MOV, OP_CMPXCHG, OP_SGDT, OP_PUSH, OP_REP_STOSB, OP_REP_INSB };

/* Set by the host before each run, with sync_global_to_guest(). */
static uint64_t guest_op, guest_addr, guest_val, guest_count;

static void guest_push(uint64_t stack_top, uint64_t val)
{
	/* On a stack of the host's choosing; the old one is kept in r12. */
	asm volatile("mov %%rsp, %%r12\n\t"
		     "mov %[top], %%rsp\n\t"
		     KVM_FEP "pushq %[val]\n\t"
		     "mov %%r12, %%rsp"
		     : : [top] "r"(stack_top), [val] "r"(val) : "r12", "memory");
}

static void guest_code(void)
{
	uint64_t addr, count, old;

	for (;;) {
		addr = READ_ONCE(guest_addr);
		count = READ_ONCE(guest_count);

		switch (READ_ONCE(guest_op)) {
		case OP_MOV:
			asm volatile(KVM_FEP "movq %0, (%1)"
				     : : "r"(guest_val), "r"(addr) : "memory");
			break;
		case OP_CMPXCHG:
			old = PATTERN;
			asm volatile(KVM_FEP "lock cmpxchgq %2, (%1)"
				     : "+a"(old) : "r"(addr), "r"(guest_val) : "memory");
			break;
		case OP_SGDT:
			asm volatile(KVM_FEP "sgdt (%0)" : : "r"(addr) : "memory");
			break;
		case OP_PUSH:
			guest_push(addr, guest_val);
			break;
		case OP_REP_STOSB:
			asm volatile(KVM_FEP "rep stosb"
				     : "+D"(addr), "+c"(count) : "a"(guest_val) : "memory");
			break;
		case OP_REP_INSB:
			asm volatile("rep insb"
				     : "+D"(addr), "+c"(count) : "d"(IO_PORT) : "memory");
			break;
		}
		GUEST_SYNC(guest_op);
	}
}

FIXTURE(emul) {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
	int saved_fep;
};

static void set_fep(int val)
{
	FILE *f = fopen(FEP_PARAM, "w");

	TEST_ASSERT(f, "open " FEP_PARAM);
	fprintf(f, "%d\n", val);
	TEST_ASSERT(!fclose(f), "write " FEP_PARAM);
}

FIXTURE_SETUP(emul)
{
	TEST_REQUIRE(kvm_check_cap(KVM_CAP_X86_WRITE_TRACK) & KVM_WTRACK_ENABLE_EXIT);

	self->saved_fep = get_kvm_param_integer("force_emulation_prefix");
	if (!self->saved_fep)
		set_fep(1);
	TEST_REQUIRE(kvm_is_forced_emulation_enabled());

	self->vm = vm_create_with_one_vcpu(&self->vcpu, guest_code);
	vm_userspace_mem_region_add(self->vm, VM_MEM_SRC_ANONYMOUS, DATA_GPA,
				    DATA_SLOT, DATA_PAGES, 0);
	virt_map(self->vm, DATA_GPA, DATA_GPA, DATA_PAGES);
	memset(addr_gpa2hva(self->vm, DATA_GPA), FILL, DATA_PAGES * PAGE_SIZE);
	vm_enable_wtrack(self->vm, KVM_WTRACK_ENABLE_EXIT);
}

FIXTURE_TEARDOWN(emul)
{
	kvm_vm_free(self->vm);
	if (!self->saved_fep)
		set_fep(0);
}

static void set_guest_op(struct kvm_vm *vm, enum guest_op op, uint64_t addr,
			 uint64_t val, uint64_t count)
{
	guest_op = op;
	guest_addr = addr;
	guest_val = val;
	guest_count = count;
	sync_global_to_guest(vm, guest_op);
	sync_global_to_guest(vm, guest_addr);
	sync_global_to_guest(vm, guest_val);
	sync_global_to_guest(vm, guest_count);
}

static uint8_t *hva(struct kvm_vm *vm, uint64_t gpa)
{
	return addr_gpa2hva(vm, gpa);
}

/* Whether [gpa, gpa + len) still holds the fill pattern. */
static bool untouched(struct kvm_vm *vm, uint64_t gpa, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (hva(vm, gpa)[i] != FILL)
			return false;
	return true;
}

/*
 * Run to the emulator's stop at @gpa, and return the registers there.  KVM
 * skips the forced emulation prefix before it emulates, so the retry runs
 * the bare instruction natively, and that write is stopped by the MMU
 * (wtrack_exit_test) until the page is unprotected: with the same report,
 * and nothing changed in between.
 */
static struct kvm_regs stop(struct kvm_vcpu *vcpu, uint64_t gpa)
{
	struct kvm_regs regs, again;

	vcpu_run_to_wtrack_exit(vcpu, gpa);
	vcpu_regs_get(vcpu, &regs);
	vcpu_run_to_wtrack_exit(vcpu, gpa);
	vcpu_regs_get(vcpu, &again);
	TEST_ASSERT(!memcmp(&regs, &again, sizeof(regs)),
		    "the retried write moved the registers (RIP 0x%llx -> 0x%llx)",
		    regs.rip, again.rip);
	return regs;
}

TEST_F(emul, mov_stops_then_lands_once)
{
	uint64_t gpa = PAGE(2) + 0x40;

	vm_wtrack_protect(self->vm, PAGE(2), PAGE_SIZE);
	set_guest_op(self->vm, OP_MOV, gpa, 0x1122334455667788ULL, 0);

	stop(self->vcpu, gpa);
	ASSERT_TRUE(untouched(self->vm, PAGE(2), PAGE_SIZE));

	vm_wtrack_unprotect(self->vm, PAGE(2), PAGE_SIZE);
	vcpu_run_to_ucall(self->vcpu, UCALL_SYNC);
	ASSERT_EQ(*(uint64_t *)hva(self->vm, gpa), 0x1122334455667788ULL);
}

/* The second half is protected: the first half must not land either. */
TEST_F(emul, straddling_write_lands_no_half)
{
	uint64_t gpa = PAGE(3) - 4;

	vm_wtrack_protect(self->vm, PAGE(3), PAGE_SIZE);
	set_guest_op(self->vm, OP_MOV, gpa, 0x1122334455667788ULL, 0);

	stop(self->vcpu, PAGE(3));
	ASSERT_TRUE(untouched(self->vm, gpa, 8));

	vm_wtrack_unprotect(self->vm, PAGE(3), PAGE_SIZE);
	vcpu_run_to_ucall(self->vcpu, UCALL_SYNC);
	ASSERT_EQ(*(uint64_t *)hva(self->vm, gpa), 0x1122334455667788ULL);
}

/* The first half is protected: reported there, to the end of its page. */
TEST_F(emul, straddling_write_first_half_protected)
{
	uint64_t gpa = PAGE(4) - 2;

	vm_wtrack_protect(self->vm, PAGE(3), PAGE_SIZE);
	set_guest_op(self->vm, OP_MOV, gpa, 0x1122334455667788ULL, 0);

	stop(self->vcpu, gpa);
	ASSERT_TRUE(untouched(self->vm, gpa, 8));

	vm_wtrack_unprotect(self->vm, PAGE(3), PAGE_SIZE);
	vcpu_run_to_ucall(self->vcpu, UCALL_SYNC);
	ASSERT_EQ(*(uint64_t *)hva(self->vm, gpa), 0x1122334455667788ULL);
}

TEST_F(emul, locked_cmpxchg_applies_once)
{
	uint64_t gpa = PAGE(1) + 0x100;

	vm_wtrack_protect(self->vm, PAGE(1), PAGE_SIZE);
	set_guest_op(self->vm, OP_CMPXCHG, gpa, 42, 0);

	stop(self->vcpu, gpa);
	ASSERT_EQ(*(uint64_t *)hva(self->vm, gpa), PATTERN);

	vm_wtrack_unprotect(self->vm, PAGE(1), PAGE_SIZE);
	vcpu_run_to_ucall(self->vcpu, UCALL_SYNC);
	ASSERT_EQ(*(uint64_t *)hva(self->vm, gpa), 42);
}

/* SGDT stores a descriptor-table register through the emulator's write_std. */
TEST_F(emul, descriptor_table_store_stops)
{
	uint64_t gpa = PAGE(5) + 0x200;
	struct kvm_sregs sregs;

	vm_wtrack_protect(self->vm, PAGE(5), PAGE_SIZE);
	set_guest_op(self->vm, OP_SGDT, gpa, 0, 0);

	stop(self->vcpu, gpa);
	ASSERT_TRUE(untouched(self->vm, gpa, 10));

	vm_wtrack_unprotect(self->vm, PAGE(5), PAGE_SIZE);
	vcpu_run_to_ucall(self->vcpu, UCALL_SYNC);
	vcpu_sregs_get(self->vcpu, &sregs);
	ASSERT_EQ(*(uint16_t *)hva(self->vm, gpa), sregs.gdt.limit);
	ASSERT_EQ(*(uint64_t *)hva(self->vm, gpa + 2), sregs.gdt.base);
}

/* A stopped PUSH must not have moved RSP. */
TEST_F(emul, push_leaves_rsp_alone)
{
	uint64_t top = PAGE(6) + 0x80;
	struct kvm_regs regs;

	vm_wtrack_protect(self->vm, PAGE(6), PAGE_SIZE);
	set_guest_op(self->vm, OP_PUSH, top, 0xabcdef, 0);

	regs = stop(self->vcpu, top - 8);
	ASSERT_EQ(regs.rsp, top);
	ASSERT_TRUE(untouched(self->vm, top - 8, 8));

	vm_wtrack_unprotect(self->vm, PAGE(6), PAGE_SIZE);
	vcpu_run_to_ucall(self->vcpu, UCALL_SYNC);
	ASSERT_EQ(*(uint64_t *)hva(self->vm, top - 8), 0xabcdef);
}

/*
 * REP STOSB from an unprotected page into a protected one: the iterations
 * before the boundary are done, as when a string instruction is
 * interrupted, and RCX/RDI say exactly how far it got.
 */
TEST_F(emul, rep_string_stops_at_the_protected_page)
{
	uint64_t start = PAGE(3) - 16;
	struct kvm_regs regs;

	vm_wtrack_protect(self->vm, PAGE(3), PAGE_SIZE);
	set_guest_op(self->vm, OP_REP_STOSB, start, 0xaa, 64);

	regs = stop(self->vcpu, PAGE(3));
	ASSERT_EQ(regs.rdi, PAGE(3));
	ASSERT_EQ(regs.rcx, 48);
	for (int i = 0; i < 16; i++)
		ASSERT_EQ(hva(self->vm, start)[i], 0xaa);
	ASSERT_TRUE(untouched(self->vm, PAGE(3), 48));

	vm_wtrack_unprotect(self->vm, PAGE(3), PAGE_SIZE);
	vcpu_run_to_ucall(self->vcpu, UCALL_SYNC);
	for (int i = 0; i < 64; i++)
		ASSERT_EQ(hva(self->vm, start)[i], 0xaa);
	ASSERT_TRUE(untouched(self->vm, start + 64, 16));
}

/*
 * REP INSB into a protected page stops before the port is read, so the
 * retried instruction reads it exactly once.
 */
TEST_F(emul, rep_insb_reads_the_port_once)
{
	uint64_t gpa = PAGE(7) + 0x10;
	struct kvm_run *run = self->vcpu->run;
	int port_reads = 0;

	vm_wtrack_protect(self->vm, PAGE(7), PAGE_SIZE);
	set_guest_op(self->vm, OP_REP_INSB, gpa, 0, 4);

	stop(self->vcpu, gpa);
	ASSERT_TRUE(untouched(self->vm, gpa, 4));

	vm_wtrack_unprotect(self->vm, PAGE(7), PAGE_SIZE);
	for (;;) {
		vcpu_run(self->vcpu);
		if (run->exit_reason != KVM_EXIT_IO || run->io.port != IO_PORT)
			break;
		port_reads += wtrack_answer_insb(self->vcpu, IO_PORT, port_reads);
	}
	ASSERT_EQ(port_reads, 4);
	ASSERT_EQ(get_ucall(self->vcpu, NULL), UCALL_SYNC);
	for (int i = 0; i < 4; i++)
		ASSERT_EQ(hva(self->vm, gpa)[i], 0xd0 + i);
}

/*
 * The page is protected while userspace completes REP INSB's port read:
 * the data it gave is held, not read again.  The instruction goes on,
 * across a second protected page, and every byte lands once, in order.
 */
TEST_F(emul, rep_insb_keeps_port_data_across_a_stop)
{
	uint64_t gpa = PAGE(4) - 8;
	int given;

	set_guest_op(self->vm, OP_REP_INSB, gpa, 0, 16);
	vcpu_run(self->vcpu);
	given = wtrack_answer_insb(self->vcpu, IO_PORT, 0);
	ASSERT_EQ(given, 8);

	vm_wtrack_protect(self->vm, PAGE(3), 2 * PAGE_SIZE);
	vcpu_run_to_wtrack_exit(self->vcpu, gpa);
	ASSERT_TRUE(untouched(self->vm, gpa, 16));

	/* Still stopped: the completion waits for the page, not a new read. */
	vcpu_run_to_wtrack_exit(self->vcpu, gpa);

	vm_wtrack_unprotect(self->vm, PAGE(3), PAGE_SIZE);
	vcpu_run_to_wtrack_exit(self->vcpu, PAGE(4));
	for (int i = 0; i < 8; i++)
		ASSERT_EQ(hva(self->vm, gpa)[i], 0xd0 + i);
	ASSERT_TRUE(untouched(self->vm, PAGE(4), 8));

	vm_wtrack_unprotect(self->vm, PAGE(4), PAGE_SIZE);
	vcpu_run(self->vcpu);
	given += wtrack_answer_insb(self->vcpu, IO_PORT, given);
	ASSERT_EQ(given, 16);
	vcpu_run_to_ucall(self->vcpu, UCALL_SYNC);
	for (int i = 0; i < 16; i++)
		ASSERT_EQ(hva(self->vm, gpa)[i], 0xd0 + i);
}

TEST_HARNESS_MAIN
