// SPDX-License-Identifier: GPL-2.0
/*
 * Exit mode of kvm-wtrack: a guest write to a protected page makes KVM_RUN
 * fail with EFAULT and KVM_EXIT_MEMORY_FAULT before any byte lands, reports
 * the exact GPA, and the write lands exactly once after the page is
 * unprotected.  Runs under every MMU the runner configures (TDP MMU,
 * legacy MMU, shadow paging).
 */
#include "kvm_util.h"
#include "processor.h"
#include "kselftest_harness.h"
#include "wtrack_util.h"

#define DATA_GPA	0xc0000000ULL
#define DATA_SLOT	1
#define DATA_PAGES	64
/* A second memslot right after the first, for ranges that span slots. */
#define DATA2_GPA	(DATA_GPA + DATA_PAGES * PAGE_SIZE)
#define DATA2_SLOT	2
#define DATA2_PAGES	16
#define PATTERN		0x6f6f6f6f6f6f6f6fULL

enum guest_op { OP_STORE, OP_INC, OP_FILL, OP_REMAP, OP_DONE };

/* Set by the host before each run, with sync_global_to_guest(). */
static uint64_t guest_op, guest_addr, guest_val;
/* What OP_REMAP read through the new mapping; sync_global_from_guest(). */
static uint64_t guest_seen;

/* A virtual page whose PTE the guest rewrites, and an alias of its PTE. */
#define REMAP_GVA	0x7000000000ULL
#define PTE_ALIAS_GVA	0x7000200000ULL

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
		case OP_REMAP:
			/* Write a PTE of our own page tables, then use it. */
			*(volatile uint64_t *)guest_addr = guest_val;
			asm volatile("invlpg (%0)" : : "r"(REMAP_GVA) : "memory");
			guest_seen = *(volatile uint64_t *)REMAP_GVA;
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
	TEST_REQUIRE(kvm_check_cap(KVM_CAP_X86_WRITE_TRACK) & KVM_WTRACK_ENABLE_EXIT);

	self->vm = vm_create_with_one_vcpu(&self->vcpu, guest_code);
	add_data_slot(self->vm, DATA_GPA, DATA_SLOT, DATA_PAGES);
	add_data_slot(self->vm, DATA2_GPA, DATA2_SLOT, DATA2_PAGES);
	vm_enable_wtrack(self->vm, KVM_WTRACK_ENABLE_EXIT);
}

FIXTURE_TEARDOWN(wtrack)
{
	kvm_vm_free(self->vm);
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

static uint64_t *hva(struct kvm_vm *vm, uint64_t gpa)
{
	return addr_gpa2hva(vm, gpa);
}

TEST_F(wtrack, write_stops_before_landing_then_lands_once)
{
	uint64_t gpa = DATA_GPA + 5 * PAGE_SIZE + 0x128;
	struct kvm_regs first, again;

	vm_wtrack_protect(self->vm, DATA_GPA + 5 * PAGE_SIZE, PAGE_SIZE);
	set_guest_op(self->vm, OP_STORE, gpa, 0x1234);

	vcpu_run_to_wtrack_exit(self->vcpu, gpa);
	ASSERT_EQ(*hva(self->vm, gpa), PATTERN);
	vcpu_regs_get(self->vcpu, &first);

	/* Still protected: the same instruction stops again, with no progress. */
	vcpu_run_to_wtrack_exit(self->vcpu, gpa);
	vcpu_regs_get(self->vcpu, &again);
	ASSERT_EQ(memcmp(&first, &again, sizeof(first)), 0);
	ASSERT_EQ(*hva(self->vm, gpa), PATTERN);

	vm_wtrack_unprotect(self->vm, DATA_GPA + 5 * PAGE_SIZE, PAGE_SIZE);
	vcpu_run_to_ucall(self->vcpu, UCALL_SYNC);
	ASSERT_EQ(*hva(self->vm, gpa), 0x1234);

	/* Unprotected for good: the next write does not stop. */
	set_guest_op(self->vm, OP_STORE, gpa, 0x5678);
	vcpu_run_to_ucall(self->vcpu, UCALL_SYNC);
	ASSERT_EQ(*hva(self->vm, gpa), 0x5678);
}

/*
 * Under the TDP MMU, KVM_WTRACK_UNPROTECT gives the SPTE its write access
 * back: the retried write lands without another page fault.  The other
 * MMUs take one more fault there, by design.
 */
TEST_F(wtrack, unprotect_gives_write_access_back)
{
	uint64_t gpa = DATA_GPA + 7 * PAGE_SIZE;
	uint64_t faults;

	if (!kvm_is_tdp_enabled() || !get_kvm_param_bool("tdp_mmu"))
		SKIP(return, "the retry faults once more without the TDP MMU");

	/* Map the page, and the guest's code, stack and ucall pages. */
	set_guest_op(self->vm, OP_STORE, gpa, 6);
	vcpu_run_to_ucall(self->vcpu, UCALL_SYNC);

	vm_wtrack_protect(self->vm, gpa, PAGE_SIZE);
	set_guest_op(self->vm, OP_STORE, gpa, 7);
	vcpu_run_to_wtrack_exit(self->vcpu, gpa);

	vm_wtrack_unprotect(self->vm, gpa, PAGE_SIZE);
	faults = wtrack_vcpu_stat(self->vcpu, "pf_taken");
	vcpu_run_to_ucall(self->vcpu, UCALL_SYNC);
	ASSERT_EQ(*hva(self->vm, gpa), 7);
	ASSERT_EQ(wtrack_vcpu_stat(self->vcpu, "pf_taken"), faults);
}

/* Make the guest point REMAP_GVA at @gpa; returns what it read there. */
static uint64_t guest_remap(struct kvm_vm *vm, struct kvm_vcpu *vcpu,
			    uint64_t pte_alias, uint64_t pte, bool stops,
			    uint64_t pt_page)
{
	set_guest_op(vm, OP_REMAP, pte_alias, pte);
	if (stops) {
		vcpu_run_to_wtrack_exit(vcpu, pt_page + (pte_alias & (PAGE_SIZE - 1)));
		vm_wtrack_unprotect(vm, pt_page, PAGE_SIZE);
	}
	vcpu_run_to_ucall(vcpu, UCALL_SYNC);
	sync_global_from_guest(vm, guest_seen);
	return guest_seen;
}

/*
 * The guest rewrites one of its own PTEs, a page that KVM itself write-
 * tracks under shadow paging.  KVM's tracking must not produce user exits,
 * the user's protection of that page must, and unprotecting it must leave
 * KVM's tracking intact: the guest always reads through the PTE it wrote.
 */
TEST_F(wtrack, guest_page_table_writes_keep_kvm_tracking)
{
	uint64_t a = DATA_GPA + 20 * PAGE_SIZE, b = DATA_GPA + 21 * PAGE_SIZE;
	uint64_t *pte, pt_page, alias, pte_a, pte_b;

	virt_map(self->vm, REMAP_GVA, a, 1);
	pte = vm_get_page_table_entry(self->vm, REMAP_GVA);
	pt_page = addr_hva2gpa(self->vm, pte) & ~(PAGE_SIZE - 1);
	virt_map(self->vm, PTE_ALIAS_GVA, pt_page, 1);
	alias = PTE_ALIAS_GVA + ((uint64_t)pte & (PAGE_SIZE - 1));
	pte_a = *pte;
	pte_b = (pte_a & ~PHYSICAL_PAGE_MASK) | b;
	*hva(self->vm, a) = 0xaaaa;
	*hva(self->vm, b) = 0xbbbb;

	/* KVM shadows this page table once the guest uses it. */
	ASSERT_EQ(guest_remap(self->vm, self->vcpu, alias, pte_a, false, pt_page), 0xaaaa);
	ASSERT_EQ(guest_remap(self->vm, self->vcpu, alias, pte_b, false, pt_page), 0xbbbb);

	vm_wtrack_protect(self->vm, pt_page, PAGE_SIZE);
	ASSERT_EQ(guest_remap(self->vm, self->vcpu, alias, pte_a, true, pt_page), 0xaaaa);

	/* Unprotected again: KVM still tracks its shadowed page table. */
	ASSERT_EQ(guest_remap(self->vm, self->vcpu, alias, pte_b, false, pt_page), 0xbbbb);
	ASSERT_EQ(guest_remap(self->vm, self->vcpu, alias, pte_a, false, pt_page), 0xaaaa);
}

TEST_F(wtrack, read_modify_write_applies_once)
{
	uint64_t gpa = DATA_GPA + 9 * PAGE_SIZE + 8;

	*hva(self->vm, gpa) = 41;
	vm_wtrack_protect(self->vm, DATA_GPA + 9 * PAGE_SIZE, PAGE_SIZE);
	set_guest_op(self->vm, OP_INC, gpa, 0);

	vcpu_run_to_wtrack_exit(self->vcpu, gpa);
	ASSERT_EQ(*hva(self->vm, gpa), 41);
	vm_wtrack_unprotect(self->vm, DATA_GPA + 9 * PAGE_SIZE, PAGE_SIZE);
	vcpu_run_to_ucall(self->vcpu, UCALL_SYNC);
	ASSERT_EQ(*hva(self->vm, gpa), 42);
}

TEST_F(wtrack, only_protected_pages_stop)
{
	int i;

	vm_wtrack_protect(self->vm, DATA_GPA + 10 * PAGE_SIZE, 3 * PAGE_SIZE);

	for (i = 8; i < 16; i++) {
		uint64_t gpa = DATA_GPA + i * PAGE_SIZE;

		set_guest_op(self->vm, OP_STORE, gpa, i);
		if (i >= 10 && i < 13) {
			vcpu_run_to_wtrack_exit(self->vcpu, gpa);
			ASSERT_EQ(*hva(self->vm, gpa), PATTERN);
			vm_wtrack_unprotect(self->vm, gpa, PAGE_SIZE);
		}
		vcpu_run_to_ucall(self->vcpu, UCALL_SYNC);
		ASSERT_EQ(*hva(self->vm, gpa), i);
	}
}

TEST_F(wtrack, protect_is_idempotent)
{
	uint64_t gpa = DATA_GPA + 20 * PAGE_SIZE;

	/* Twice protected is protected once: one unprotect releases it. */
	vm_wtrack_protect(self->vm, gpa, PAGE_SIZE);
	vm_wtrack_protect(self->vm, gpa, PAGE_SIZE);
	set_guest_op(self->vm, OP_STORE, gpa, 1);
	vcpu_run_to_wtrack_exit(self->vcpu, gpa);
	vm_wtrack_unprotect(self->vm, gpa, PAGE_SIZE);
	vcpu_run_to_ucall(self->vcpu, UCALL_SYNC);
	ASSERT_EQ(*hva(self->vm, gpa), 1);

	/* Unprotecting an unprotected page changes nothing. */
	vm_wtrack_unprotect(self->vm, gpa, PAGE_SIZE);
	set_guest_op(self->vm, OP_STORE, gpa, 2);
	vcpu_run_to_ucall(self->vcpu, UCALL_SYNC);
	ASSERT_EQ(*hva(self->vm, gpa), 2);
}

TEST_F(wtrack, range_spans_memslots)
{
	uint64_t first = DATA2_GPA - 2 * PAGE_SIZE, last = DATA2_GPA + PAGE_SIZE;
	uint64_t gpa;

	vm_wtrack_protect(self->vm, first, last + PAGE_SIZE - first);
	for (gpa = first; gpa <= last; gpa += PAGE_SIZE) {
		set_guest_op(self->vm, OP_STORE, gpa + 16, gpa);
		vcpu_run_to_wtrack_exit(self->vcpu, gpa + 16);
		vm_wtrack_unprotect(self->vm, gpa, PAGE_SIZE);
		vcpu_run_to_ucall(self->vcpu, UCALL_SYNC);
		ASSERT_EQ(*hva(self->vm, gpa + 16), gpa);
	}
}

TEST_F(wtrack, bulk_protect_whole_memslots)
{
	uint64_t gpa;

	/* Map every page writable first, so protection must revoke it. */
	for (gpa = DATA_GPA; gpa < DATA2_GPA + DATA2_PAGES * PAGE_SIZE; gpa += PAGE_SIZE) {
		set_guest_op(self->vm, OP_STORE, gpa, 0);
		vcpu_run_to_ucall(self->vcpu, UCALL_SYNC);
	}

	vm_wtrack_protect(self->vm, DATA_GPA, (DATA_PAGES + DATA2_PAGES) * PAGE_SIZE);
	for (gpa = DATA_GPA; gpa < DATA2_GPA + DATA2_PAGES * PAGE_SIZE; gpa += PAGE_SIZE) {
		set_guest_op(self->vm, OP_STORE, gpa, 1);
		vcpu_run_to_wtrack_exit(self->vcpu, gpa);
		ASSERT_EQ(*hva(self->vm, gpa), 0);
		vm_wtrack_unprotect(self->vm, gpa, PAGE_SIZE);
		vcpu_run_to_ucall(self->vcpu, UCALL_SYNC);
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
		ASSERT_EQ(__vm_wtrack(self->vm, KVM_WTRACK_PROTECT, bad[i].gpa, bad[i].size), -1);
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
		vcpu_run_to_ucall(self->vcpu, UCALL_SYNC);
		ASSERT_EQ(*hva(self->vm, gpa), gpa);
	}
}

TEST_F(wtrack, deleted_memslot_comes_back_unprotected)
{
	uint64_t gpa = DATA2_GPA + 3 * PAGE_SIZE;

	vm_wtrack_protect(self->vm, DATA2_GPA, DATA2_PAGES * PAGE_SIZE);
	vm_mem_region_delete(self->vm, DATA2_SLOT);
	vm_userspace_mem_region_add(self->vm, VM_MEM_SRC_ANONYMOUS, DATA2_GPA,
				    DATA2_SLOT, DATA2_PAGES, 0);

	set_guest_op(self->vm, OP_STORE, gpa, 7);
	vcpu_run_to_ucall(self->vcpu, UCALL_SYNC);
	ASSERT_EQ(*hva(self->vm, gpa), 7);

	/* And it can be protected again. */
	vm_wtrack_protect(self->vm, gpa, PAGE_SIZE);
	set_guest_op(self->vm, OP_STORE, gpa, 8);
	vcpu_run_to_wtrack_exit(self->vcpu, gpa);
}

TEST_F(wtrack, dirty_logging_on_protected_slot)
{
	uint64_t gpa = DATA2_GPA + 4 * PAGE_SIZE;
	unsigned long bitmap[1] = {};

	vm_wtrack_protect(self->vm, gpa, PAGE_SIZE);
	vm_mem_region_set_flags(self->vm, DATA2_SLOT, KVM_MEM_LOG_DIRTY_PAGES);
	kvm_vm_get_dirty_log(self->vm, DATA2_SLOT, bitmap);

	/* Turning dirty logging on (a flags-only change) keeps the protection. */
	set_guest_op(self->vm, OP_STORE, gpa, 9);
	vcpu_run_to_wtrack_exit(self->vcpu, gpa);
	kvm_vm_get_dirty_log(self->vm, DATA2_SLOT, bitmap);
	ASSERT_EQ(bitmap[0] & (1UL << 4), 0);

	vm_wtrack_unprotect(self->vm, gpa, PAGE_SIZE);
	vcpu_run_to_ucall(self->vcpu, UCALL_SYNC);
	kvm_vm_get_dirty_log(self->vm, DATA2_SLOT, bitmap);
	ASSERT_NE(bitmap[0] & (1UL << 4), 0);
	ASSERT_EQ(*hva(self->vm, gpa), 9);
}

#define HUGE_GPA	0x100000000ULL
#define HUGE_SLOT	3
#define HUGE_SIZE	(4ULL << 20)

/* Write every page of @page's 2M region but @page. */
static void fill_around(struct kvm_vm *vm, struct kvm_vcpu *vcpu, uint64_t page)
{
	uint64_t region = page & ~((2ULL << 20) - 1);

	set_guest_op(vm, OP_FILL, region, page - region);
	vcpu_run_to_ucall(vcpu, UCALL_SYNC);
	set_guest_op(vm, OP_FILL, page + PAGE_SIZE, region + (2 << 20) - page - PAGE_SIZE);
	vcpu_run_to_ucall(vcpu, UCALL_SYNC);
}

TEST_F(wtrack, huge_mapping_lets_no_write_through_and_comes_back)
{
	uint64_t protected = HUGE_GPA + 5 * PAGE_SIZE, neighbour = HUGE_GPA + 6 * PAGE_SIZE;
	uint64_t huge;

	vm_userspace_mem_region_add(self->vm, VM_MEM_SRC_ANONYMOUS_THP, HUGE_GPA,
				    HUGE_SLOT, HUGE_SIZE / PAGE_SIZE, 0);
	virt_map(self->vm, HUGE_GPA, HUGE_GPA, HUGE_SIZE / PAGE_SIZE);
	set_guest_op(self->vm, OP_FILL, HUGE_GPA, HUGE_SIZE);
	vcpu_run_to_ucall(self->vcpu, UCALL_SYNC);
	if (!vm_get_stat(self->vm, "pages_2m"))
		SKIP(return, "KVM made no 2M mapping (no THP, or shadow paging of 4K guest PTEs)");

	huge = vm_get_stat(self->vm, "pages_2m");
	vm_wtrack_protect(self->vm, protected, PAGE_SIZE);

	/* The rest of the 2M region stays writable, through 4K SPTEs... */
	set_guest_op(self->vm, OP_STORE, neighbour, 1);
	vcpu_run_to_ucall(self->vcpu, UCALL_SYNC);
	ASSERT_EQ(*hva(self->vm, neighbour), 1);
	ASSERT_LT(vm_get_stat(self->vm, "pages_2m"), huge);

	/* ...but the protected page inside it is not. */
	set_guest_op(self->vm, OP_STORE, protected, 2);
	vcpu_run_to_wtrack_exit(self->vcpu, protected);
	ASSERT_EQ(*hva(self->vm, protected), protected);
	vm_wtrack_unprotect(self->vm, protected, PAGE_SIZE);
	vcpu_run_to_ucall(self->vcpu, UCALL_SYNC);
	ASSERT_EQ(*hva(self->vm, protected), 2);

	/*
	 * Protected again, with every other page of the region written and
	 * so mapped writable with 4K SPTEs: no later fault there could bring
	 * the huge mapping back by itself.  Unprotecting must.
	 */
	vm_wtrack_protect(self->vm, protected, PAGE_SIZE);
	fill_around(self->vm, self->vcpu, protected);
	ASSERT_LT(vm_get_stat(self->vm, "pages_2m"), huge);
	vm_wtrack_unprotect(self->vm, protected, PAGE_SIZE);
	fill_around(self->vm, self->vcpu, protected);
	ASSERT_EQ(vm_get_stat(self->vm, "pages_2m"), huge);
}

/* Write every page of [@from, @to) of guest memory. */
static void fill(struct kvm_vm *vm, struct kvm_vcpu *vcpu, uint64_t from, uint64_t to)
{
	if (to <= from)
		return;
	set_guest_op(vm, OP_FILL, from, to - from);
	vcpu_run_to_ucall(vcpu, UCALL_SYNC);
}

/*
 * Two protected pages in one 2M region: the unprotect of the first leaves
 * the region split, as the second still needs 4K SPTEs, and every other
 * page written stays mapped; the unprotect of the last one brings the
 * huge mapping back.
 */
TEST_F(wtrack, huge_mapping_comes_back_after_the_last_unprotect)
{
	uint64_t a = HUGE_GPA + 5 * PAGE_SIZE, b = HUGE_GPA + 300 * PAGE_SIZE;
	uint64_t end = HUGE_GPA + (2ULL << 20);
	uint64_t huge;

	vm_userspace_mem_region_add(self->vm, VM_MEM_SRC_ANONYMOUS_THP, HUGE_GPA,
				    HUGE_SLOT, HUGE_SIZE / PAGE_SIZE, 0);
	virt_map(self->vm, HUGE_GPA, HUGE_GPA, HUGE_SIZE / PAGE_SIZE);
	fill(self->vm, self->vcpu, HUGE_GPA, HUGE_GPA + HUGE_SIZE);
	if (!vm_get_stat(self->vm, "pages_2m"))
		SKIP(return, "KVM made no 2M mapping (no THP, or shadow paging of 4K guest PTEs)");
	huge = vm_get_stat(self->vm, "pages_2m");

	vm_wtrack_protect(self->vm, a, PAGE_SIZE);
	vm_wtrack_protect(self->vm, b, PAGE_SIZE);
	fill(self->vm, self->vcpu, HUGE_GPA, a);
	fill(self->vm, self->vcpu, a + PAGE_SIZE, b);
	fill(self->vm, self->vcpu, b + PAGE_SIZE, end);
	ASSERT_LT(vm_get_stat(self->vm, "pages_2m"), huge);

	/* The first unprotect: b still splits the region. */
	vm_wtrack_unprotect(self->vm, a, PAGE_SIZE);
	fill(self->vm, self->vcpu, HUGE_GPA, b);
	fill(self->vm, self->vcpu, b + PAGE_SIZE, end);
	ASSERT_LT(vm_get_stat(self->vm, "pages_2m"), huge);
	set_guest_op(self->vm, OP_STORE, b, 3);
	vcpu_run_to_wtrack_exit(self->vcpu, b);

	/* The last one: the region is mapped huge again. */
	vm_wtrack_unprotect(self->vm, b, PAGE_SIZE);
	vcpu_run_to_ucall(self->vcpu, UCALL_SYNC);
	ASSERT_EQ(*hva(self->vm, b), 3);
	fill(self->vm, self->vcpu, HUGE_GPA, end);
	ASSERT_EQ(vm_get_stat(self->vm, "pages_2m"), huge);
}

#define RING_ENTRIES	1024

/* Collect @ring's dirty entries from *@next on; true if @slot/@offset was one. */
static bool ring_has(struct kvm_dirty_gfn *ring, uint32_t *next, int slot,
		     uint64_t offset)
{
	bool found = false;

	for (;; (*next)++) {
		struct kvm_dirty_gfn *e = &ring[*next % RING_ENTRIES];

		if (!(__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) & KVM_DIRTY_GFN_F_DIRTY))
			return found;
		found |= e->slot == slot && e->offset == offset;
		__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
	}
}

/*
 * The dirty ring on a protected memslot: a stopped write dirties nothing,
 * and once unprotected the write that lands is pushed to the ring.
 */
TEST(dirty_ring_on_protected_slot)
{
	uint64_t gpa = DATA_GPA + 3 * PAGE_SIZE;
	struct kvm_dirty_gfn *ring;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	uint32_t next = 0;

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_X86_WRITE_TRACK) & KVM_WTRACK_ENABLE_EXIT);
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_DIRTY_LOG_RING));

	vm = vm_create(1);
	vm_enable_dirty_ring(vm, RING_ENTRIES * sizeof(struct kvm_dirty_gfn));
	vcpu = vm_vcpu_add(vm, 0, guest_code);
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, DATA_GPA, DATA_SLOT,
				    DATA_PAGES, KVM_MEM_LOG_DIRTY_PAGES);
	virt_map(vm, DATA_GPA, DATA_GPA, DATA_PAGES);
	vm_enable_wtrack(vm, KVM_WTRACK_ENABLE_EXIT);
	ring = vcpu_map_dirty_ring(vcpu);

	vm_wtrack_protect(vm, gpa, PAGE_SIZE);
	set_guest_op(vm, OP_STORE, gpa, 1);
	vcpu_run_to_wtrack_exit(vcpu, gpa);
	ASSERT_FALSE(ring_has(ring, &next, DATA_SLOT, 3));
	kvm_vm_reset_dirty_ring(vm);

	vm_wtrack_unprotect(vm, gpa, PAGE_SIZE);
	vcpu_run_to_ucall(vcpu, UCALL_SYNC);
	ASSERT_TRUE(ring_has(ring, &next, DATA_SLOT, 3));
	kvm_vm_reset_dirty_ring(vm);
	kvm_vm_free(vm);
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
