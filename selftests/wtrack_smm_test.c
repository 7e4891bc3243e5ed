// SPDX-License-Identifier: GPL-2.0
/*
 * Protection and SMM's address space.  A protection is of the gfn, as
 * for KVM's own write tracking, held by the address space 0 memslot: a
 * vCPU in SMM writing a protected gfn through address space 1 (here an
 * alias of the same memory, as QEMU's SMM address space has) is stopped
 * like any other, and the protection goes wherever it goes in address
 * space 0.  Before, address space 1 memslots had bits of their own: they
 * survived the deletion of the address space 0 memslot, so a re-created
 * one came back with its gfns stopped in SMM and emulated, forever,
 * outside it.
 *
 * SMRAM and the SMI handler follow x86_64/smm_test.c: a memslot of
 * address space 1 at SMBASE, the handler at SMBASE + 0x8000, entered in
 * SMM's real mode with flat 4 GiB data segments.
 */
#include "kvm_util.h"
#include "processor.h"
#include "kselftest_harness.h"
#include "wtrack_ring_util.h"

#define SMRAM_GPA	0x1000000ULL
#define SMRAM_SIZE	65536
#define SMRAM_SLOT	((1 << 16) | 1)
#define DATA_GPA	0x10000000ULL	/* below 4 GiB: the handler's reach */
#define DATA_PAGES	4
#define DATA_SLOT	10
#define DATA_ALIAS_SLOT	((1 << 16) | 10)
#define SYNC_PORT	0xe
#define SMM_STAGE	0xfe
#define SMM_VALUE	0x5a5a5a5a
#define SMM_OFFSET	0x100

#define BYTES32(x)	(x) & 0xff, ((x) >> 8) & 0xff, ((x) >> 16) & 0xff, ((x) >> 24) & 0xff

/* 16-bit code, flat 32-bit addresses: write the data page, report, RSM. */
static uint8_t smi_handler[] = {
	0x66, 0xb8, BYTES32(SMM_VALUE),			/* mov $SMM_VALUE, %eax */
	0x66, 0xbb, BYTES32(DATA_GPA + SMM_OFFSET),	/* mov $..., %ebx */
	0x67, 0x66, 0x89, 0x03,				/* addr32 mov %eax, (%ebx) */
	0xb0, SMM_STAGE,				/* mov $SMM_STAGE, %al */
	0xe4, SYNC_PORT,				/* in $SYNC_PORT, %al */
	0x0f, 0xaa,					/* rsm */
};

static void sync_with_host(uint64_t stage)
{
	asm volatile("in %[port], %%al" : "+a"(stage) : [port] "i"(SYNC_PORT));
}

/* Stage 1, then writes the data page outside SMM at stage 2, and so on. */
static void guest_code(void)
{
	for (uint64_t n = 1;; n += 2) {
		sync_with_host(n);
		*(volatile uint64_t *)DATA_GPA = n;
		sync_with_host(n + 1);
	}
}

FIXTURE(smm) {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
	void *data;
};

static void data_memslot(FIXTURE_DATA(smm) *self, uint32_t slot, uint64_t size)
{
	vm_set_user_memory_region(self->vm, slot, 0, DATA_GPA, size, self->data);
}

FIXTURE_SETUP(smm)
{
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_X86_SMM));
	TEST_REQUIRE(kvm_check_cap(KVM_CAP_X86_WRITE_TRACK) & KVM_WTRACK_ENABLE_EXIT);

	self->vm = vm_create_with_one_vcpu(&self->vcpu, guest_code);
	vm_userspace_mem_region_add(self->vm, VM_MEM_SRC_ANONYMOUS, SMRAM_GPA,
				    SMRAM_SLOT, SMRAM_SIZE / PAGE_SIZE, 0);
	memset(addr_gpa2hva(self->vm, SMRAM_GPA), 0, SMRAM_SIZE);
	memcpy(addr_gpa2hva(self->vm, SMRAM_GPA) + 0x8000, smi_handler,
	       sizeof(smi_handler));
	vcpu_set_msr(self->vcpu, MSR_IA32_SMBASE, SMRAM_GPA);

	/* The data, in address space 0 and aliased in SMM's. */
	self->data = mmap(NULL, DATA_PAGES * PAGE_SIZE, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(self->data, MAP_FAILED);
	data_memslot(self, DATA_SLOT, DATA_PAGES * PAGE_SIZE);
	data_memslot(self, DATA_ALIAS_SLOT, DATA_PAGES * PAGE_SIZE);
	virt_map(self->vm, DATA_GPA, DATA_GPA, DATA_PAGES);
}

FIXTURE_TEARDOWN(smm)
{
	kvm_vm_free(self->vm);
	munmap(self->data, DATA_PAGES * PAGE_SIZE);
}

static void inject_smi(struct kvm_vcpu *vcpu)
{
	struct kvm_vcpu_events events;

	vcpu_events_get(vcpu, &events);
	events.smi.pending = 1;
	events.flags |= KVM_VCPUEVENT_VALID_SMM;
	vcpu_events_set(vcpu, &events);
}

/* Run to the next stage report; returns it. */
static uint64_t run_to_stage(struct kvm_vcpu *vcpu)
{
	struct kvm_regs regs;

	vcpu_run(vcpu);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
	TEST_ASSERT_EQ(vcpu->run->io.port, SYNC_PORT);
	vcpu_regs_get(vcpu, &regs);
	return regs.rax & 0xff;
}

static uint32_t smm_word(FIXTURE_DATA(smm) *self)
{
	return *(volatile uint32_t *)(self->data + SMM_OFFSET);
}

/* An SMI now: the handler writes the data page, reports, and returns. */
static void run_smi(FIXTURE_DATA(smm) *self)
{
	inject_smi(self->vcpu);
	TEST_ASSERT_EQ(run_to_stage(self->vcpu), SMM_STAGE);
	TEST_ASSERT_EQ(smm_word(self), SMM_VALUE);
}

TEST_F(smm, write_in_smm_is_stopped)
{
	vm_enable_wtrack(self->vm, KVM_WTRACK_ENABLE_EXIT);
	ASSERT_EQ(run_to_stage(self->vcpu), 1);

	vm_wtrack_protect(self->vm, DATA_GPA, PAGE_SIZE);
	inject_smi(self->vcpu);
	vcpu_run_to_wtrack_exit(self->vcpu, DATA_GPA + SMM_OFFSET);
	ASSERT_EQ(smm_word(self), 0);

	/* Unprotected in address space 0: the handler's write goes through. */
	vm_wtrack_unprotect(self->vm, DATA_GPA, PAGE_SIZE);
	ASSERT_EQ(run_to_stage(self->vcpu), SMM_STAGE);
	ASSERT_EQ(smm_word(self), SMM_VALUE);
	ASSERT_EQ(run_to_stage(self->vcpu), 2);
}

TEST_F(smm, deleted_memslot_takes_the_smm_protection_along)
{
	struct kvm_vm *vm = self->vm;
	uint64_t emulated;

	vm_enable_wtrack(vm, KVM_WTRACK_ENABLE_EXIT);
	ASSERT_EQ(run_to_stage(self->vcpu), 1);
	vm_wtrack_protect(vm, DATA_GPA, DATA_PAGES * PAGE_SIZE);

	/* The address space 0 memslot goes, and comes back unprotected. */
	data_memslot(self, DATA_SLOT, 0);
	data_memslot(self, DATA_SLOT, DATA_PAGES * PAGE_SIZE);

	/* Outside SMM the write lands, and not through the emulator. */
	emulated = wtrack_vcpu_stat(self->vcpu, "pf_emulate");
	ASSERT_EQ(run_to_stage(self->vcpu), 2);
	ASSERT_EQ(*(uint64_t *)self->data, 1);
	if (kvm_is_tdp_enabled())
		ASSERT_EQ(wtrack_vcpu_stat(self->vcpu, "pf_emulate"), emulated);

	/* In SMM too. */
	run_smi(self);
	ASSERT_EQ(run_to_stage(self->vcpu), 3);
}

/* The ring's release ends every protection, in SMM's address space too. */
TEST_F(smm, release_ends_the_smm_protection)
{
	struct wtrack_test_ring ring = { .fd = -1 };

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_X86_WRITE_TRACK) & KVM_WTRACK_ENABLE_RING);
	ASSERT_EQ(__vm_enable_wtrack_ring(self->vm, 16), 0);
	wtrack_ring_attach(self->vm, &ring);
	ASSERT_EQ(run_to_stage(self->vcpu), 1);
	vm_wtrack_protect(self->vm, DATA_GPA, DATA_PAGES * PAGE_SIZE);

	/*
	 * The address space 0 memslot goes, then the consumer: nothing of
	 * the protection may be left for the SMM alias.
	 */
	data_memslot(self, DATA_SLOT, 0);
	wtrack_ring_detach(&ring);
	run_smi(self);

	data_memslot(self, DATA_SLOT, DATA_PAGES * PAGE_SIZE);
	ASSERT_EQ(run_to_stage(self->vcpu), 2);
}

TEST_HARNESS_MAIN
