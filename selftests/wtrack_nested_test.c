// SPDX-License-Identifier: GPL-2.0
/*
 * An L2 guest writes into L1 memory that userspace protected: the exit
 * reports the L1 guest-physical address while the vCPU stays in guest
 * mode, no byte lands, and L2 completes the write after the unprotect;
 * without nested paging and with nested NPT mapping L2's addresses
 * elsewhere.  Like every stop, the exit names the first protected byte and
 * the rest of its page.  KVM's own write of vmcb12 at a nested VM-exit
 * lands and is reported as landed; L1's VMSAVE into a protected page is
 * an L1 write, and is stopped before any of it lands.
 * SVM runs under QEMU's emulation; VMX builds and skips there.
 */
#include "kvm_util.h"
#include "processor.h"
#include "svm_util.h"
#include "vmx.h"
#include "kselftest_harness.h"
#include "wtrack_util.h"

#define DATA_GPA	0xc0000000ULL
#define DATA_SLOT	1
#define DATA_PAGES	4
#define L2_WRITE_GPA	(DATA_GPA + 2 * PAGE_SIZE + 0x40)
#define L2_VALUE	0x4c32L
#define L2_STACK_WORDS	64

/* L2 shares L1's page tables and, without nested paging, its GPA space. */
static void l2_write_then_vmmcall(void)
{
	*(volatile uint64_t *)L2_WRITE_GPA = L2_VALUE;
	vmmcall();
}

static void l2_write_then_vmcall(void)
{
	*(volatile uint64_t *)L2_WRITE_GPA = L2_VALUE;
	vmcall();
}

static void l1_svm_code(struct svm_test_data *svm)
{
	unsigned long l2_stack[L2_STACK_WORDS];

	generic_svm_setup(svm, l2_write_then_vmmcall, &l2_stack[L2_STACK_WORDS]);
	run_guest(svm->vmcb, svm->vmcb_gpa);
	GUEST_ASSERT_EQ(svm->vmcb->control.exit_code, SVM_EXIT_VMMCALL);
	GUEST_ASSERT_EQ(*(volatile uint64_t *)L2_WRITE_GPA, L2_VALUE);
	GUEST_DONE();
}

static void l2_vmmcall(void)
{
	vmmcall();
}

/*
 * VMRUN without the library's run_guest(), which stores into vmcb12 from
 * L1: only KVM may write the protected vmcb12 here.  VMRUN keeps L1's RAX,
 * RSP and RIP; the callee-saved registers are saved around it.
 */
static void l1_vmrun(uint64_t vmcb_gpa)
{
	asm volatile("push %%rbp; push %%rbx; push %%r12; push %%r13; push %%r14; push %%r15\n\t"
		     "vmrun %%rax\n\t"
		     "pop %%r15; pop %%r14; pop %%r13; pop %%r12; pop %%rbx; pop %%rbp"
		     : : "a"(vmcb_gpa)
		     : "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "memory", "cc");
}

/*
 * With nested NPT, L2's guest-physical addresses differ from L1's: L1 maps
 * L2's [NPT_L2_GPA, +2M) onto its own [DATA_GPA, +2M) and the rest of the
 * first GiB onto itself.  The exit must report L1's address.
 */
#define NPT_L2_GPA	0x80000000ULL
#define NPT_L2_GVA	0x90000000ULL
#define NPT_L2_WRITE_GVA (NPT_L2_GVA + (L2_WRITE_GPA & (PAGE_SIZE - 1)))
#define NPT_RWX		0x7ULL		/* present, writable, user */
#define NPT_HUGE	(1ULL << 7)

static uint64_t npt_root;	/* L1 GPA of the nested page tables */

static void l2_npt_write_then_vmmcall(void)
{
	*(volatile uint64_t *)NPT_L2_WRITE_GVA = L2_VALUE;
	vmmcall();
}

static void l1_svm_npt_code(struct svm_test_data *svm)
{
	unsigned long l2_stack[L2_STACK_WORDS];

	generic_svm_setup(svm, l2_npt_write_then_vmmcall, &l2_stack[L2_STACK_WORDS]);
	svm->vmcb->control.nested_ctl |= SVM_NESTED_CTL_NP_ENABLE;
	svm->vmcb->control.nested_cr3 = READ_ONCE(npt_root);
	svm->vmcb->save.g_pat = rdmsr(MSR_IA32_CR_PAT);
	run_guest(svm->vmcb, svm->vmcb_gpa);
	GUEST_ASSERT_EQ(svm->vmcb->control.exit_code, SVM_EXIT_VMMCALL);
	GUEST_ASSERT_EQ(*(volatile uint64_t *)L2_WRITE_GPA, L2_VALUE);
	GUEST_DONE();
}

static uint64_t *npt_table(struct kvm_vm *vm, uint64_t *gpa)
{
	*gpa = vm_phy_page_alloc(vm, KVM_GUEST_PAGE_TABLE_MIN_PADDR, 0);
	return memset(addr_gpa2hva(vm, *gpa), 0, PAGE_SIZE);
}

/* 2M nested pages: identity for L1's first GiB, plus the data window. */
static void build_npt(struct kvm_vm *vm)
{
	uint64_t pml4_gpa, pdpt_gpa, pd0_gpa, pd2_gpa;
	uint64_t *pml4 = npt_table(vm, &pml4_gpa);
	uint64_t *pdpt = npt_table(vm, &pdpt_gpa);
	uint64_t *pd0 = npt_table(vm, &pd0_gpa);
	uint64_t *pd2 = npt_table(vm, &pd2_gpa);

	pml4[0] = pdpt_gpa | NPT_RWX;
	pdpt[0] = pd0_gpa | NPT_RWX;
	for (int i = 0; i < 512; i++)
		pd0[i] = (i * (2ULL << 20)) | NPT_HUGE | NPT_RWX;
	pdpt[NPT_L2_GPA >> 30] = pd2_gpa | NPT_RWX;
	pd2[0] = DATA_GPA | NPT_HUGE | NPT_RWX;

	npt_root = pml4_gpa;
	sync_global_to_guest(vm, npt_root);
}

/* Stops after setting up vmcb12, so that the host can protect it. */
static void l1_svm_vmcb12_code(struct svm_test_data *svm)
{
	unsigned long l2_stack[L2_STACK_WORDS];

	generic_svm_setup(svm, l2_vmmcall, &l2_stack[L2_STACK_WORDS]);
	GUEST_SYNC(0);
	l1_vmrun(svm->vmcb_gpa);
	GUEST_ASSERT_EQ(svm->vmcb->control.exit_code, SVM_EXIT_VMMCALL);
	GUEST_DONE();
}

static void l1_vmx_code(struct vmx_pages *vmx)
{
	unsigned long l2_stack[L2_STACK_WORDS];

	GUEST_ASSERT(prepare_for_vmx_operation(vmx));
	GUEST_ASSERT(load_vmcs(vmx));
	prepare_vmcs(vmx, l2_write_then_vmcall, &l2_stack[L2_STACK_WORDS]);
	GUEST_ASSERT(!vmlaunch());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_VMCALL);
	GUEST_ASSERT_EQ(*(volatile uint64_t *)L2_WRITE_GPA, L2_VALUE);
	GUEST_DONE();
}

static struct kvm_vm *create_vm(struct kvm_vcpu **vcpu, void *l1_code)
{
	struct kvm_vm *vm = vm_create_with_one_vcpu(vcpu, l1_code);

	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, DATA_GPA,
				    DATA_SLOT, DATA_PAGES, 0);
	virt_map(vm, DATA_GPA, DATA_GPA, DATA_PAGES);
	vm_enable_wtrack(vm, KVM_WTRACK_ENABLE_EXIT);
	return vm;
}

/* A VM whose vCPU runs @l1_code with its SVM state as argument. */
static struct kvm_vm *create_svm_vm(struct kvm_vcpu **vcpu, void *l1_code,
				    struct svm_test_data **svm)
{
	struct kvm_vm *vm = create_vm(vcpu, l1_code);
	vm_vaddr_t svm_gva;

	*svm = vcpu_alloc_svm(vm, &svm_gva);
	vcpu_args_set(*vcpu, 1, svm_gva);
	return vm;
}

/* L2 writes into a protected L1 page: stopped in guest mode, then done. */
static void run_l2_write(struct kvm_vm *vm, struct kvm_vcpu *vcpu)
{
	uint64_t *data = addr_gpa2hva(vm, L2_WRITE_GPA);

	*data = 0;
	vm_wtrack_protect(vm, L2_WRITE_GPA & ~(PAGE_SIZE - 1), PAGE_SIZE);

	vcpu_run_to_wtrack_exit(vcpu, L2_WRITE_GPA);
	TEST_ASSERT(vcpu->run->flags & KVM_RUN_X86_GUEST_MODE, "the vCPU left L2");
	TEST_ASSERT_EQ(*data, 0);

	vm_wtrack_unprotect(vm, L2_WRITE_GPA & ~(PAGE_SIZE - 1), PAGE_SIZE);
	vcpu_run_to_ucall(vcpu, UCALL_DONE);
	TEST_ASSERT_EQ(*data, L2_VALUE);
}

TEST(l2_write_svm)
{
	struct svm_test_data *svm;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;

	TEST_REQUIRE(kvm_has_cap(KVM_CAP_X86_WRITE_TRACK));
	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_SVM));

	vm = create_svm_vm(&vcpu, l1_svm_code, &svm);
	run_l2_write(vm, vcpu);
	kvm_vm_free(vm);
}

TEST(l2_write_svm_nested_npt)
{
	struct svm_test_data *svm;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;

	TEST_REQUIRE(kvm_has_cap(KVM_CAP_X86_WRITE_TRACK));
	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_SVM));
	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_NPT));

	vm = create_svm_vm(&vcpu, l1_svm_npt_code, &svm);
	build_npt(vm);
	virt_map(vm, NPT_L2_GVA, NPT_L2_GPA + (L2_WRITE_GPA & ~(PAGE_SIZE - 1)) - DATA_GPA, 1);
	run_l2_write(vm, vcpu);
	kvm_vm_free(vm);
}

/*
 * KVM writes vmcb12 on L1's behalf at the nested VM-exit: with the page
 * protected, the write lands and is reported once, and L1 reads the exit
 * code KVM wrote.
 */
TEST(vmcb12_writes_are_reported_svm)
{
	struct svm_test_data *svm;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	uint64_t page;

	TEST_REQUIRE(kvm_has_cap(KVM_CAP_X86_WRITE_TRACK));
	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_SVM));

	vm = create_svm_vm(&vcpu, l1_svm_vmcb12_code, &svm);
	page = svm->vmcb_gpa & ~(PAGE_SIZE - 1);

	vcpu_run_to_ucall(vcpu, UCALL_SYNC);
	vm_wtrack_protect(vm, page, PAGE_SIZE);
	TEST_ASSERT_EQ(vcpu_run_count_landed(vcpu, page, UCALL_DONE), 1);
	kvm_vm_free(vm);
}

#define VMSAVE_GPA	(DATA_GPA + 3 * PAGE_SIZE)
#define FILL		0x6f

/* L1 saves its state into VMSAVE_GPA, once. */
static void l1_vmsave_code(void)
{
	wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SVME);
	asm volatile("vmsave %%rax" : : "a"(VMSAVE_GPA) : "memory");
	GUEST_DONE();
}

static bool page_filled(struct kvm_vm *vm, uint64_t gpa)
{
	uint8_t *p = addr_gpa2hva(vm, gpa);

	for (int i = 0; i < PAGE_SIZE; i++)
		if (p[i] != FILL)
			return false;
	return true;
}

/*
 * VMSAVE into a protected page: stopped like a guest write, not done and
 * reported as landed.  KVM, intercepting it, names the first byte VMSAVE
 * writes (vmcb.save.fs); a CPU doing it without the intercept (virtual
 * VMLOAD/VMSAVE) faults in the nested page tables on the page it
 * translates, which may name the page's start.  Either way the report
 * runs to the page's end, no byte has landed, and the VMSAVE is done
 * once after the unprotect.
 */
TEST(vmsave_into_a_protected_page_is_stopped_svm)
{
	const uint64_t fs = VMSAVE_GPA + offsetof(struct vmcb, save.fs);
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	uint64_t gpa;

	TEST_REQUIRE(kvm_has_cap(KVM_CAP_X86_WRITE_TRACK));
	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_SVM));

	vm = create_vm(&vcpu, l1_vmsave_code);
	memset(addr_gpa2hva(vm, VMSAVE_GPA), FILL, PAGE_SIZE);
	vm_wtrack_protect(vm, VMSAVE_GPA, PAGE_SIZE);

	gpa = vcpu_run_to_wtrack_stop(vcpu);
	TEST_ASSERT(gpa == fs || gpa == VMSAVE_GPA, "VMSAVE stopped at %#lx, want %#lx", gpa, fs);
	TH_LOG("VMSAVE stopped at +%#lx: %s", (unsigned long)(gpa - VMSAVE_GPA),
	       gpa == fs ? "KVM intercepted it" : "the CPU's nested page walk faulted");
	TEST_ASSERT(page_filled(vm, VMSAVE_GPA), "VMSAVE landed in part");

	/* Retried while still protected: the same stop. */
	vcpu_run_to_wtrack_exit(vcpu, gpa);
	TEST_ASSERT(page_filled(vm, VMSAVE_GPA), "VMSAVE landed in part");

	vm_wtrack_unprotect(vm, VMSAVE_GPA, PAGE_SIZE);
	vcpu_run_to_ucall(vcpu, UCALL_DONE);
	TEST_ASSERT(!page_filled(vm, VMSAVE_GPA), "VMSAVE did not land");
	kvm_vm_free(vm);
}

TEST(l2_write_vmx)
{
	struct kvm_vcpu *vcpu;
	vm_vaddr_t vmx_gva;
	struct kvm_vm *vm;

	TEST_REQUIRE(kvm_has_cap(KVM_CAP_X86_WRITE_TRACK));
	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_VMX));

	vm = create_vm(&vcpu, l1_vmx_code);
	vcpu_alloc_vmx(vm, &vmx_gva);
	vcpu_args_set(vcpu, 1, vmx_gva);
	run_l2_write(vm, vcpu);
	kvm_vm_free(vm);
}

TEST_HARNESS_MAIN
