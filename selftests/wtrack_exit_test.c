// SPDX-License-Identifier: GPL-2.0
/*
 * Exit mode of kvm-wtrack: a guest write to a protected page makes KVM_RUN
 * fail with EFAULT and KVM_EXIT_MEMORY_FAULT before any byte lands, reports
 * the exact GPA, and the write lands exactly once after the page is
 * unprotected.  Runs under every MMU the runner configures (TDP MMU,
 * legacy MMU, shadow paging).
 */
#include <errno.h>
#include <linux/kvm_wtrack.h>

#include "kvm_util.h"
#include "processor.h"
#include "kselftest_harness.h"

#define DATA_GPA	0xc0000000ULL
#define DATA_SLOT	1
#define DATA_PAGES	64
/* A second memslot right after the first, for ranges that span slots. */
#define DATA2_GPA	(DATA_GPA + DATA_PAGES * PAGE_SIZE)
#define DATA2_SLOT	2
#define DATA2_PAGES	16
#define PATTERN		0x6f6f6f6f6f6f6f6fULL

#define WTRACK_EXIT_FLAGS \
	(KVM_MEMORY_EXIT_FLAG_WRITE_TRACK | KVM_MEMORY_EXIT_FLAG_WTRACK_WRITE)

enum guest_op { OP_STORE, OP_INC, OP_FILL, OP_DONE };

/* Set by the host before each run, with sync_global_to_guest(). */
static uint64_t guest_op, guest_addr, guest_val;

static void guest_code(void)
{
	for (;;) {
		switch (READ_ONCE(guest_op)) {
		case OP_STORE:
			*(volatile uint64_t *)guest_addr = guest_val;
			break;
		case OP_INC:
			/* A read-modify-write: retried, it must add 1 once. */
			asm volatile("incq (%0)" : : "r"(guest_addr) : "memory");
			break;
		case OP_FILL:
			/* Touch every page of [guest_addr, guest_addr + guest_val). */
			for (uint64_t a = guest_addr; a < guest_addr + guest_val; a += PAGE_SIZE)
				*(volatile uint64_t *)a = a;
			break;
		case OP_DONE:
			GUEST_DONE();
		}
		GUEST_SYNC(guest_op);
	}
}

FIXTURE(wtrack) {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
};

static void add_data_slot(struct kvm_vm *vm, uint64_t gpa, int slot, int pages)
{
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, gpa, slot, pages, 0);
	virt_map(vm, gpa, gpa, pages);
	memset(addr_gpa2hva(vm, gpa), 0x6f, pages * PAGE_SIZE);
}

FIXTURE_SETUP(wtrack)
{
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_X86_WRITE_TRACK,
		.args = { KVM_WTRACK_ENABLE_EXIT },
	};

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_X86_WRITE_TRACK) & KVM_WTRACK_ENABLE_EXIT);

	self->vm = vm_create_with_one_vcpu(&self->vcpu, guest_code);
	add_data_slot(self->vm, DATA_GPA, DATA_SLOT, DATA_PAGES);
	add_data_slot(self->vm, DATA2_GPA, DATA2_SLOT, DATA2_PAGES);
	vm_ioctl(self->vm, KVM_ENABLE_CAP, &cap);
}

FIXTURE_TEARDOWN(wtrack)
{
	kvm_vm_free(self->vm);
}

static int __wtrack(struct kvm_vm *vm, unsigned long cmd, uint64_t gpa,
		    uint64_t size)
{
	struct kvm_wtrack_range range = { .gpa = gpa, .size = size };

	return ioctl(vm->fd, cmd, &range);
}

static void wtrack_protect(struct kvm_vm *vm, uint64_t gpa, uint64_t size)
{
	int r = __wtrack(vm, KVM_WTRACK_PROTECT, gpa, size);

	TEST_ASSERT(!r, __KVM_IOCTL_ERROR("KVM_WTRACK_PROTECT", r));
}

static void wtrack_unprotect(struct kvm_vm *vm, uint64_t gpa, uint64_t size)
{
	int r = __wtrack(vm, KVM_WTRACK_UNPROTECT, gpa, size);

	TEST_ASSERT(!r, __KVM_IOCTL_ERROR("KVM_WTRACK_UNPROTECT", r));
}

static void set_guest_op(struct kvm_vm *vm, enum guest_op op, uint64_t addr,
			 uint64_t val)
{
	guest_op = op;
	guest_addr = addr;
	guest_val = val;
	sync_global_to_guest(vm, guest_op);
	sync_global_to_guest(vm, guest_addr);
	sync_global_to_guest(vm, guest_val);
}

/* Run until the guest reports the operation done. */
static void run_to_sync(struct kvm_vcpu *vcpu)
{
	struct ucall uc;
	int r = _vcpu_run(vcpu);

	TEST_ASSERT(!r, "KVM_RUN failed: %d errno %d (exit %s)", r, errno,
		    exit_reason_str(vcpu->run->exit_reason));
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
	switch (get_ucall(vcpu, &uc)) {
	case UCALL_SYNC:
		break;
	case UCALL_ABORT:
		REPORT_GUEST_ASSERT(uc);
	default:
		TEST_FAIL("unexpected ucall %lu", uc.cmd);
	}
}

/* Run and expect the write-tracking exit for the write at @gpa. */
static void run_to_wtrack_exit(struct kvm_vcpu *vcpu, uint64_t gpa)
{
	struct kvm_run *run = vcpu->run;
	int r = _vcpu_run(vcpu);

	TEST_ASSERT(r == -1 && errno == EFAULT,
		    "KVM_RUN: want -1/EFAULT, got %d errno %d (exit %s)", r, errno,
		    exit_reason_str(run->exit_reason));
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_MEMORY_FAULT);
	TEST_ASSERT((run->memory_fault.flags & WTRACK_EXIT_FLAGS) == WTRACK_EXIT_FLAGS,
		    "flags 0x%llx lack the write-tracking bits", run->memory_fault.flags);
	TEST_ASSERT(!(run->memory_fault.flags & KVM_MEMORY_EXIT_FLAG_PRIVATE),
		    "a shared-memory write reported as private");
	TEST_ASSERT_EQ(run->memory_fault.gpa, gpa);
	TEST_ASSERT_EQ(run->memory_fault.size, PAGE_SIZE - (gpa & (PAGE_SIZE - 1)));
}

static uint64_t *hva(struct kvm_vm *vm, uint64_t gpa)
{
	return addr_gpa2hva(vm, gpa);
}

TEST_F(wtrack, write_stops_before_landing_then_lands_once)
{
	uint64_t gpa = DATA_GPA + 5 * PAGE_SIZE + 0x128;
	struct kvm_regs first, again;

	wtrack_protect(self->vm, DATA_GPA + 5 * PAGE_SIZE, PAGE_SIZE);
	set_guest_op(self->vm, OP_STORE, gpa, 0x1234);

	run_to_wtrack_exit(self->vcpu, gpa);
	ASSERT_EQ(*hva(self->vm, gpa), PATTERN);
	vcpu_regs_get(self->vcpu, &first);

	/* Still protected: the same instruction stops again, with no progress. */
	run_to_wtrack_exit(self->vcpu, gpa);
	vcpu_regs_get(self->vcpu, &again);
	ASSERT_EQ(memcmp(&first, &again, sizeof(first)), 0);
	ASSERT_EQ(*hva(self->vm, gpa), PATTERN);

	wtrack_unprotect(self->vm, DATA_GPA + 5 * PAGE_SIZE, PAGE_SIZE);
	run_to_sync(self->vcpu);
	ASSERT_EQ(*hva(self->vm, gpa), 0x1234);

	/* Unprotected for good: the next write does not stop. */
	set_guest_op(self->vm, OP_STORE, gpa, 0x5678);
	run_to_sync(self->vcpu);
	ASSERT_EQ(*hva(self->vm, gpa), 0x5678);
}

TEST_F(wtrack, read_modify_write_applies_once)
{
	uint64_t gpa = DATA_GPA + 9 * PAGE_SIZE + 8;

	*hva(self->vm, gpa) = 41;
	wtrack_protect(self->vm, DATA_GPA + 9 * PAGE_SIZE, PAGE_SIZE);
	set_guest_op(self->vm, OP_INC, gpa, 0);

	run_to_wtrack_exit(self->vcpu, gpa);
	ASSERT_EQ(*hva(self->vm, gpa), 41);
	wtrack_unprotect(self->vm, DATA_GPA + 9 * PAGE_SIZE, PAGE_SIZE);
	run_to_sync(self->vcpu);
	ASSERT_EQ(*hva(self->vm, gpa), 42);
}

TEST_F(wtrack, only_protected_pages_stop)
{
	int i;

	wtrack_protect(self->vm, DATA_GPA + 10 * PAGE_SIZE, 3 * PAGE_SIZE);

	for (i = 8; i < 16; i++) {
		uint64_t gpa = DATA_GPA + i * PAGE_SIZE;

		set_guest_op(self->vm, OP_STORE, gpa, i);
		if (i >= 10 && i < 13) {
			run_to_wtrack_exit(self->vcpu, gpa);
			ASSERT_EQ(*hva(self->vm, gpa), PATTERN);
			wtrack_unprotect(self->vm, gpa, PAGE_SIZE);
		}
		run_to_sync(self->vcpu);
		ASSERT_EQ(*hva(self->vm, gpa), i);
	}
}

TEST_F(wtrack, protect_is_idempotent)
{
	uint64_t gpa = DATA_GPA + 20 * PAGE_SIZE;

	/* Twice protected is protected once: one unprotect releases it. */
	wtrack_protect(self->vm, gpa, PAGE_SIZE);
	wtrack_protect(self->vm, gpa, PAGE_SIZE);
	set_guest_op(self->vm, OP_STORE, gpa, 1);
	run_to_wtrack_exit(self->vcpu, gpa);
	wtrack_unprotect(self->vm, gpa, PAGE_SIZE);
	run_to_sync(self->vcpu);
	ASSERT_EQ(*hva(self->vm, gpa), 1);

	/* Unprotecting an unprotected page changes nothing. */
	wtrack_unprotect(self->vm, gpa, PAGE_SIZE);
	set_guest_op(self->vm, OP_STORE, gpa, 2);
	run_to_sync(self->vcpu);
	ASSERT_EQ(*hva(self->vm, gpa), 2);
}

TEST_F(wtrack, range_spans_memslots)
{
	uint64_t first = DATA2_GPA - 2 * PAGE_SIZE, last = DATA2_GPA + PAGE_SIZE;
	uint64_t gpa;

	wtrack_protect(self->vm, first, last + PAGE_SIZE - first);
	for (gpa = first; gpa <= last; gpa += PAGE_SIZE) {
		set_guest_op(self->vm, OP_STORE, gpa + 16, gpa);
		run_to_wtrack_exit(self->vcpu, gpa + 16);
		wtrack_unprotect(self->vm, gpa, PAGE_SIZE);
		run_to_sync(self->vcpu);
		ASSERT_EQ(*hva(self->vm, gpa + 16), gpa);
	}
}

TEST_F(wtrack, bulk_protect_whole_memslots)
{
	uint64_t gpa;

	/* Map every page writable first, so protection must revoke it. */
	for (gpa = DATA_GPA; gpa < DATA2_GPA + DATA2_PAGES * PAGE_SIZE; gpa += PAGE_SIZE) {
		set_guest_op(self->vm, OP_STORE, gpa, 0);
		run_to_sync(self->vcpu);
	}

	wtrack_protect(self->vm, DATA_GPA, (DATA_PAGES + DATA2_PAGES) * PAGE_SIZE);
	for (gpa = DATA_GPA; gpa < DATA2_GPA + DATA2_PAGES * PAGE_SIZE; gpa += PAGE_SIZE) {
		set_guest_op(self->vm, OP_STORE, gpa, 1);
		run_to_wtrack_exit(self->vcpu, gpa);
		ASSERT_EQ(*hva(self->vm, gpa), 0);
		wtrack_unprotect(self->vm, gpa, PAGE_SIZE);
		run_to_sync(self->vcpu);
		ASSERT_EQ(*hva(self->vm, gpa), 1);
	}
}

TEST_F(wtrack, refused_ranges_change_nothing)
{
	const uint64_t maxphys_gpa = 1ULL << self->vm->pa_bits;
	const struct {
		uint64_t gpa, size;
		int err;
	} bad[] = {
		{ DATA_GPA + 1, PAGE_SIZE, EINVAL },		/* unaligned gpa */
		{ DATA_GPA, PAGE_SIZE + 1, EINVAL },		/* unaligned size */
		{ DATA_GPA, 0, EINVAL },			/* empty */
		{ -PAGE_SIZE, 2 * PAGE_SIZE, EINVAL },		/* wraps around */
		{ maxphys_gpa, PAGE_SIZE, EINVAL },		/* beyond MAXPHYADDR */
		{ DATA_GPA - PAGE_SIZE, 2 * PAGE_SIZE, ENOENT },	/* starts in a hole */
		{ DATA2_GPA, (DATA2_PAGES + 1) * PAGE_SIZE, ENOENT },	/* ends in one */
	};
	struct kvm_wtrack_range range;
	uint64_t gpa;
	int i;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		ASSERT_EQ(__wtrack(self->vm, KVM_WTRACK_PROTECT, bad[i].gpa, bad[i].size), -1);
		ASSERT_EQ(errno, bad[i].err) TH_LOG("range %d", i);
	}

	range = (struct kvm_wtrack_range){ .gpa = DATA_GPA, .size = PAGE_SIZE, .flags = 1 };
	ASSERT_EQ(__vm_ioctl(self->vm, KVM_WTRACK_PROTECT, &range), -1);
	ASSERT_EQ(errno, EINVAL);
	range.flags = 0;
	range.reserved[4] = 1;
	ASSERT_EQ(__vm_ioctl(self->vm, KVM_WTRACK_PROTECT, &range), -1);
	ASSERT_EQ(errno, EINVAL);
	ASSERT_EQ(ioctl(self->vm->fd, KVM_WTRACK_PROTECT, NULL), -1);
	ASSERT_EQ(errno, EFAULT);

	/* Nothing was half-applied: every page of both slots still writable. */
	for (gpa = DATA_GPA; gpa < DATA2_GPA + DATA2_PAGES * PAGE_SIZE; gpa += PAGE_SIZE) {
		set_guest_op(self->vm, OP_STORE, gpa, gpa);
		run_to_sync(self->vcpu);
		ASSERT_EQ(*hva(self->vm, gpa), gpa);
	}
}

TEST_F(wtrack, deleted_memslot_comes_back_unprotected)
{
	uint64_t gpa = DATA2_GPA + 3 * PAGE_SIZE;

	wtrack_protect(self->vm, DATA2_GPA, DATA2_PAGES * PAGE_SIZE);
	vm_mem_region_delete(self->vm, DATA2_SLOT);
	vm_userspace_mem_region_add(self->vm, VM_MEM_SRC_ANONYMOUS, DATA2_GPA,
				    DATA2_SLOT, DATA2_PAGES, 0);

	set_guest_op(self->vm, OP_STORE, gpa, 7);
	run_to_sync(self->vcpu);
	ASSERT_EQ(*hva(self->vm, gpa), 7);

	/* And it can be protected again. */
	wtrack_protect(self->vm, gpa, PAGE_SIZE);
	set_guest_op(self->vm, OP_STORE, gpa, 8);
	run_to_wtrack_exit(self->vcpu, gpa);
}

TEST_F(wtrack, dirty_logging_on_protected_slot)
{
	uint64_t gpa = DATA2_GPA + 4 * PAGE_SIZE;
	unsigned long bitmap[1] = {};

	wtrack_protect(self->vm, gpa, PAGE_SIZE);
	vm_mem_region_set_flags(self->vm, DATA2_SLOT, KVM_MEM_LOG_DIRTY_PAGES);
	kvm_vm_get_dirty_log(self->vm, DATA2_SLOT, bitmap);

	/* Turning dirty logging on (a flags-only change) keeps the protection. */
	set_guest_op(self->vm, OP_STORE, gpa, 9);
	run_to_wtrack_exit(self->vcpu, gpa);
	kvm_vm_get_dirty_log(self->vm, DATA2_SLOT, bitmap);
	ASSERT_EQ(bitmap[0] & (1UL << 4), 0);

	wtrack_unprotect(self->vm, gpa, PAGE_SIZE);
	run_to_sync(self->vcpu);
	kvm_vm_get_dirty_log(self->vm, DATA2_SLOT, bitmap);
	ASSERT_NE(bitmap[0] & (1UL << 4), 0);
	ASSERT_EQ(*hva(self->vm, gpa), 9);
}

#define HUGE_GPA	0x100000000ULL
#define HUGE_SLOT	3
#define HUGE_SIZE	(4ULL << 20)

TEST_F(wtrack, huge_mapping_lets_no_write_through)
{
	uint64_t protected = HUGE_GPA + 5 * PAGE_SIZE, neighbour = HUGE_GPA + 6 * PAGE_SIZE;

	vm_userspace_mem_region_add(self->vm, VM_MEM_SRC_ANONYMOUS_THP, HUGE_GPA,
				    HUGE_SLOT, HUGE_SIZE / PAGE_SIZE, 0);
	virt_map(self->vm, HUGE_GPA, HUGE_GPA, HUGE_SIZE / PAGE_SIZE);
	set_guest_op(self->vm, OP_FILL, HUGE_GPA, HUGE_SIZE);
	run_to_sync(self->vcpu);
	if (!vm_get_stat(self->vm, "pages_2m"))
		SKIP(return, "KVM made no 2M mapping (no THP, or shadow paging of 4K guest PTEs)");

	wtrack_protect(self->vm, protected, PAGE_SIZE);

	/* The rest of the 2M region stays writable... */
	set_guest_op(self->vm, OP_STORE, neighbour, 1);
	run_to_sync(self->vcpu);
	ASSERT_EQ(*hva(self->vm, neighbour), 1);

	/* ...but the protected page inside it is not. */
	set_guest_op(self->vm, OP_STORE, protected, 2);
	run_to_wtrack_exit(self->vcpu, protected);
	ASSERT_EQ(*hva(self->vm, protected), protected);
	wtrack_unprotect(self->vm, protected, PAGE_SIZE);
	run_to_sync(self->vcpu);
	ASSERT_EQ(*hva(self->vm, protected), 2);
}

TEST(not_enabled_fails_enxio)
{
	struct kvm_wtrack_range range = { .gpa = DATA_GPA, .size = PAGE_SIZE };
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;

	TEST_REQUIRE(kvm_has_cap(KVM_CAP_X86_WRITE_TRACK));
	vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	add_data_slot(vm, DATA_GPA, DATA_SLOT, DATA_PAGES);
	ASSERT_EQ(__vm_ioctl(vm, KVM_WTRACK_PROTECT, &range), -1);
	ASSERT_EQ(errno, ENXIO);
	ASSERT_EQ(__vm_ioctl(vm, KVM_WTRACK_UNPROTECT, &range), -1);
	ASSERT_EQ(errno, ENXIO);
	kvm_vm_free(vm);
}

TEST_HARNESS_MAIN
