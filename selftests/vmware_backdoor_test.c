// SPDX-License-Identifier: GPL-2.0
/*
 * The VMware backdoor next to kvm-wtrack.
 *
 * - kvm.enable_vmware_backdoor: user code (CPL3) reaches I/O ports
 *   0x5658/0x5659 although the TSS I/O bitmap denies every port, and the
 *   pseudo-PMCs although CR4.PCE is 0; other ports and PMCs still #GP.
 *   Both keep working while guest memory is write-protected.
 * - KVM_CAP_X86_VMWARE_HYPERCALL: VMCALL/VMMCALL with the magic in EAX
 *   exits with the protocol's registers and the CPL, and the registers
 *   userspace returns reach the guest; other hypercalls (KVM's, Hyper-V's)
 *   behave as without it, and so does every hypercall once the guest has
 *   enabled Hyper-V's (its OS ID set): RAX is no input of those, and may
 *   hold the magic by chance.
 * - KVM_CAP_X86_VMWARE_NESTED_BACKDOOR_L0: L2's backdoor at CPL3 goes to
 *   L0 with it, to L1 without it; everything else goes to L1 either way.
 *   SVM runs under QEMU's emulation; VMX builds and skips there.
 * - REP INSB on the high-bandwidth port into protected pages: stopped
 *   before any byte lands, every byte of the port's stream lands once and
 *   in order, also when the page is protected while userspace answers the
 *   port read; in exit and ring mode.
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <time.h>

#include <linux/kvm_vmware.h>

#include "kvm_util.h"
#include "processor.h"
#include "svm_util.h"
#include "vmx.h"
#include "hyperv.h"
#include "kselftest_harness.h"
#include "wtrack_util.h"

#define BDOOR_PORT	0x5658
#define BDOOR_PORT_HB	0x5659
#define BDOOR_CMD	10		/* GETVERSION: any command will do */
#define PMC_HOST_TSC	0x10000
#define PMC_REAL_TIME	0x10001
#define PMC_APPARENT	0x10002
#define PLAIN_PORT	0x80

#define DATA_GPA	0xc0000000ULL
#define DATA_SLOT	1
#define DATA_PAGES	4
#define PAGE(n)		(DATA_GPA + (n) * PAGE_SIZE)
#define HB_LEN		48
#define HB_BUF		(PAGE(1) - 16)	/* 16 bytes in page 0, 32 in page 1 */

/* GDT slots after the library's code, data and 16-byte TSS descriptors. */
#define KERNEL_CS	0x08
#define USER_DS		(0x28 | 3)
#define USER_CS		(0x30 | 3)
#define STAR_SYSRET	0x20ULL		/* sysretq: SS = +8, CS = +16 */
/* SYSCALL clears these in RFLAGS. */
#define EFLAGS_TF	BIT(8)
#define EFLAGS_IF	BIT(9)
#define EFLAGS_DF	BIT(10)

/* --- Guest side ------------------------------------------------------- */

enum bdoor_op { OP_HCALL, OP_IN, OP_INSB, OP_RDPMC };

/* One backdoor access: the registers before, then after. */
struct bdoor_req {
	uint64_t rax, rbx, rcx, rdx, rsi, rdi, rbp;
	uint64_t op;
};

/*
 * bdoor_op(req): load RAX..RBP from @req, make the access req->op names,
 * store RAX..RBP back.  In assembly because RBP is one of the protocol's
 * registers.
 */
void bdoor_op(struct bdoor_req *req);
asm(".pushsection .text\n"
    "bdoor_op:\n"
    "	push %rbx\n"
    "	push %rbp\n"
    "	push %rdi\n"
    "	mov 0x38(%rdi), %r11\n"
    "	mov 0x00(%rdi), %rax\n"
    "	mov 0x08(%rdi), %rbx\n"
    "	mov 0x10(%rdi), %rcx\n"
    "	mov 0x18(%rdi), %rdx\n"
    "	mov 0x20(%rdi), %rsi\n"
    "	mov 0x30(%rdi), %rbp\n"
    "	mov 0x28(%rdi), %rdi\n"
    "	cmp $1, %r11\n"
    "	je 3f\n"
    "	cmp $2, %r11\n"
    "	je 4f\n"
    "	cmp $3, %r11\n"
    "	je 5f\n"
    "	cmpb $0, host_cpu_is_amd(%rip)\n"
    "	je 1f\n"
    "	vmmcall\n"
    "	jmp 9f\n"
    "1:	vmcall\n"
    "	jmp 9f\n"
    "3:	in %dx, %eax\n"
    "	jmp 9f\n"
    "4:	rep insb\n"
    "	jmp 9f\n"
    "5:	rdpmc\n"
    "9:	xchg %rdi, (%rsp)\n"
    "	mov %rax, 0x00(%rdi)\n"
    "	mov %rbx, 0x08(%rdi)\n"
    "	mov %rcx, 0x10(%rdi)\n"
    "	mov %rdx, 0x18(%rdi)\n"
    "	mov %rsi, 0x20(%rdi)\n"
    "	mov %rbp, 0x30(%rdi)\n"
    "	pop %rax\n"
    "	mov %rax, 0x28(%rdi)\n"
    "	pop %rbp\n"
    "	pop %rbx\n"
    "	ret\n"
    ".popsection\n");

/*
 * user_call(fn, arg, rsp): run fn(arg) at CPL3 on stack @rsp, with
 * IOPL 0 and interrupts off, and return its result.  SYSRETQ goes down,
 * SYSCALL comes back; syscall_entry is MSR_LSTAR.
 */
uint64_t user_call(uint64_t (*fn)(uint64_t), uint64_t arg, uint64_t rsp);
void syscall_entry(void);
uint64_t user_call_kernel_rsp;
asm(".pushsection .text\n"
    "user_call:\n"
    "	push %rbx\n"
    "	push %rbp\n"
    "	push %r12\n"
    "	push %r13\n"
    "	push %r14\n"
    "	push %r15\n"
    "	mov %rsp, user_call_kernel_rsp(%rip)\n"
    "	mov %rdi, %rax\n"
    "	mov %rsi, %rdi\n"
    "	mov %rdx, %rsp\n"
    "	lea user_trampoline(%rip), %rcx\n"
    "	mov $2, %r11\n"
    "	sysretq\n"
    "user_trampoline:\n"
    "	call *%rax\n"
    "	mov %rax, %rdi\n"
    "	syscall\n"
    "syscall_entry:\n"
    "	mov user_call_kernel_rsp(%rip), %rsp\n"
    "	mov %rdi, %rax\n"
    "	pop %r15\n"
    "	pop %r14\n"
    "	pop %r13\n"
    "	pop %r12\n"
    "	pop %rbp\n"
    "	pop %rbx\n"
    "	ret\n"
    ".popsection\n");

static uint8_t user_stack[4096] __aligned(16);
static uint8_t tss_stack[4096] __aligned(16);

static uint64_t user_bdoor_op(uint64_t req)
{
	bdoor_op((struct bdoor_req *)req);
	return 0;
}

static void user_bdoor(struct bdoor_req *req)
{
	user_call(user_bdoor_op, (uint64_t)req, (uint64_t)user_stack + sizeof(user_stack));
}

static uint64_t user_cs(uint64_t unused)
{
	uint16_t cs;

	asm volatile("mov %%cs, %0" : "=r"(cs));
	return cs;
}

/* Length of the few instructions that #GP here. */
static int insn_len(uint64_t rip)
{
	const uint8_t *p = (const uint8_t *)rip;

	if (p[0] == 0xed)			/* in %dx, %eax */
		return 1;
	if (p[0] == 0xf3 && p[1] == 0x6c)	/* rep insb */
		return 2;
	if (p[0] == 0x0f && p[1] == 0x33)	/* rdpmc */
		return 2;
	if (p[0] == 0x0f && p[1] == 0x01)	/* vmcall, vmmcall */
		return 3;
	return 0;
}

static volatile int gp_count;

/* A #GP the test expects: count it and step over the instruction. */
static void gp_handler(struct ex_regs *regs)
{
	int len = insn_len(regs->rip);

	GUEST_ASSERT(len);
	gp_count++;
	regs->rip += len;
}

static struct bdoor_req req;

static struct bdoor_req in_req(uint16_t port)
{
	return (struct bdoor_req){ .op = OP_IN, .rax = KVM_VMWARE_MAGIC,
				   .rbx = ~0u, .rcx = BDOOR_CMD, .rdx = port };
}

static struct bdoor_req rdpmc_req(uint32_t idx)
{
	return (struct bdoor_req){ .op = OP_RDPMC, .rcx = idx };
}

static uint64_t pmc_value(void)
{
	return (req.rdx << 32) | (uint32_t)req.rax;
}

/*
 * From CPL3: backdoor I/O (SYNC 1: EAX and EBX as the host answered), a
 * plain port (#GP), the pseudo-PMCs (SYNC 2 with each value) and PMC 0
 * (#GP).
 */
static void guest_user_backdoor(void)
{
	GUEST_ASSERT_EQ(user_call(user_cs, 0, (uint64_t)user_stack + sizeof(user_stack)),
			USER_CS);

	req = in_req(BDOOR_PORT);
	user_bdoor(&req);
	GUEST_SYNC3(1, req.rax, req.rbx);

	req = in_req(PLAIN_PORT);
	user_bdoor(&req);
	GUEST_ASSERT_EQ(gp_count, 1);

	for (uint32_t pmc = PMC_HOST_TSC; pmc <= PMC_APPARENT; pmc++) {
		req = rdpmc_req(pmc);
		user_bdoor(&req);
		GUEST_SYNC3(2, pmc, pmc_value());
	}
	GUEST_ASSERT_EQ(gp_count, 1);

	req = rdpmc_req(0);
	user_bdoor(&req);
	GUEST_ASSERT_EQ(gp_count, 2);
	GUEST_DONE();
}

static struct bdoor_req hcall_req(uint64_t rax)
{
	return (struct bdoor_req){ .op = OP_HCALL, .rax = rax, .rbx = 0xb0b0b0b0b0b0b0b0,
				   .rcx = BDOOR_CMD, .rdx = BDOOR_PORT, .rsi = 0x5151,
				   .rdi = 0xd1d1d1d1d1d1, .rbp = 0xbeefbeef00000000 };
}

/* A hypercall from CPL0 then CPL3; SYNC 3 with each result's registers. */
static void guest_hypercalls(uint64_t rax)
{
	req = hcall_req(rax);
	bdoor_op(&req);
	GUEST_SYNC1(3);

	req = hcall_req(rax);
	user_bdoor(&req);
	GUEST_SYNC1(3);
	GUEST_DONE();
}

/*
 * With Hyper-V hypercalls enabled, a hypercall is Hyper-V's, the VMware
 * magic in RAX or not: one with an invalid code each way.  Its OS ID
 * cleared, the guest's VMware hypercall exits to userspace again.
 */
static void guest_hyperv_then_vmware(uint64_t hypercall_page)
{
	wrmsr(HV_X64_MSR_GUEST_OS_ID, HYPERV_LINUX_OS_ID);
	wrmsr(HV_X64_MSR_HYPERCALL, hypercall_page | 1 /* enable */);

	req = hcall_req(0);
	req.rcx = 0xffff;		/* the control: no such call code */
	req.rdx = 0;
	bdoor_op(&req);
	GUEST_ASSERT_EQ(req.rax, HV_STATUS_INVALID_HYPERCALL_CODE);

	req = hcall_req(KVM_VMWARE_MAGIC);
	req.rcx = 0xffff;
	req.rdx = 0;
	bdoor_op(&req);
	GUEST_ASSERT_EQ(req.rax, HV_STATUS_INVALID_HYPERCALL_CODE);

	wrmsr(HV_X64_MSR_GUEST_OS_ID, 0);
	req = hcall_req(KVM_VMWARE_MAGIC);
	bdoor_op(&req);
	GUEST_SYNC1(3);
	GUEST_DONE();
}

/* REP INSB of HB_LEN bytes from the high-bandwidth port, at CPL3. */
static void guest_hb_insb(uint64_t buf)
{
	req = (struct bdoor_req){ .op = OP_INSB, .rax = KVM_VMWARE_MAGIC,
				  .rcx = HB_LEN, .rdx = BDOOR_PORT_HB, .rdi = buf };
	user_bdoor(&req);
	GUEST_ASSERT_EQ(req.rcx, 0);
	GUEST_ASSERT_EQ(req.rdi, buf + HB_LEN);
	GUEST_DONE();
}

/* --- Host side --------------------------------------------------------- */

static bool backdoor_enabled(void)
{
	return get_kvm_param_bool("enable_vmware_backdoor");
}

#define TEST_REQUIRE_BACKDOOR() \
	__TEST_REQUIRE(backdoor_enabled(), "kvm.enable_vmware_backdoor is off")

/* Make every page-table entry a user one, at every level. */
static void set_user_bit(struct kvm_vm *vm, uint64_t table_gpa, int level)
{
	uint64_t *pte = addr_gpa2hva(vm, table_gpa);

	for (int i = 0; i < 512; i++) {
		if (!(pte[i] & PTE_PRESENT_MASK))
			continue;
		pte[i] |= PTE_USER_MASK;
		if (level > 1 && !(pte[i] & PTE_LARGE_MASK))
			set_user_bit(vm, PTE_GET_PA(pte[i]), level - 1);
	}
}

static void set_gdt_entry(struct kvm_vm *vm, uint16_t sel, uint64_t desc)
{
	uint64_t *gdt = addr_gva2hva(vm, vm->arch.gdt);

	gdt[sel >> 3] = desc;
}

/*
 * User mode for the guest: user code and data segments, a TSS whose I/O
 * bitmap denies every port and whose RSP0 takes exceptions from CPL3, user
 * pages everywhere, and SYSCALL/SYSRET.  Call once every mapping exists.
 */
static void vm_setup_user_mode(struct kvm_vm *vm)
{
	uint8_t *tss = addr_gva2hva(vm, vm->arch.tss);
	uint64_t rsp0 = (uint64_t)tss_stack + sizeof(tss_stack);

	set_gdt_entry(vm, USER_DS, 0x00cff2000000ffffULL);
	set_gdt_entry(vm, USER_CS, 0x00affa000000ffffULL);
	memcpy(tss + 4, &rsp0, sizeof(rsp0));
	*(uint16_t *)(tss + 0x66) = 0x68;	/* past the TSS limit: no port */
	set_user_bit(vm, vm->pgd, 4);
	vm_install_exception_handler(vm, GP_VECTOR, gp_handler);
}

static void vcpu_setup_user_mode(struct kvm_vcpu *vcpu)
{
	struct kvm_sregs sregs;

	vcpu_sregs_get(vcpu, &sregs);
	sregs.efer |= EFER_SCE;
	vcpu_sregs_set(vcpu, &sregs);
	vcpu_set_msr(vcpu, MSR_STAR, (STAR_SYSRET << 48) | ((uint64_t)KERNEL_CS << 32));
	vcpu_set_msr(vcpu, MSR_LSTAR, (uint64_t)syscall_entry);
	vcpu_set_msr(vcpu, MSR_SYSCALL_MASK, EFLAGS_IF | EFLAGS_DF | EFLAGS_TF);
}

static struct kvm_vm *create_vm(struct kvm_vcpu **vcpu, void *guest_code)
{
	struct kvm_vm *vm = vm_create_with_one_vcpu(vcpu, guest_code);

	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, DATA_GPA, DATA_SLOT,
				    DATA_PAGES, 0);
	virt_map(vm, DATA_GPA, DATA_GPA, DATA_PAGES);
	return vm;
}

static void finish_user_setup(struct kvm_vm *vm, struct kvm_vcpu *vcpu)
{
	vm_setup_user_mode(vm);
	vcpu_setup_user_mode(vcpu);
}

static int __enable_cap(struct kvm_vm *vm, uint32_t cap, uint64_t arg0,
			uint64_t arg1, uint32_t flags)
{
	struct kvm_enable_cap ec = { .cap = cap, .flags = flags, .args = { arg0, arg1 } };

	return __vm_ioctl(vm, KVM_ENABLE_CAP, &ec);
}

static uint64_t ucall_of(struct kvm_vcpu *vcpu, struct ucall *uc)
{
	uint64_t cmd = get_ucall(vcpu, uc);

	if (cmd == UCALL_ABORT)
		REPORT_GUEST_ASSERT(*uc);
	return cmd;
}

static void run_to_sync(struct kvm_vcpu *vcpu, struct ucall *uc, uint64_t stage)
{
	vcpu_run(vcpu);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
	TEST_ASSERT_EQ(ucall_of(vcpu, uc), UCALL_SYNC);
	TEST_ASSERT_EQ(uc->args[0], stage);
}

static void run_to_done(struct kvm_vcpu *vcpu)
{
	struct ucall uc;

	vcpu_run(vcpu);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
	TEST_ASSERT_EQ(ucall_of(vcpu, &uc), UCALL_DONE);
}

/*
 * Answer the 32-bit IN from the backdoor port as VMware does: EAX through
 * the I/O data, EBX (the magic) through the registers.  The vCPU must be
 * at CPL3.
 */
static void answer_backdoor_in(struct kvm_vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	struct kvm_regs regs;
	struct kvm_sregs sregs;

	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
	TEST_ASSERT_EQ(run->io.port, BDOOR_PORT);
	TEST_ASSERT_EQ(run->io.direction, KVM_EXIT_IO_IN);
	TEST_ASSERT_EQ(run->io.size, 4);
	TEST_ASSERT_EQ(run->io.count, 1);
	vcpu_sregs_get(vcpu, &sregs);
	TEST_ASSERT_EQ(sregs.cs.selector, USER_CS);

	vcpu_regs_get(vcpu, &regs);
	TEST_ASSERT_EQ((uint32_t)regs.rax, KVM_VMWARE_MAGIC);
	TEST_ASSERT_EQ((uint32_t)regs.rcx, BDOOR_CMD);
	/*
	 * KVM_SET_REGS makes the emulator reload every register when it
	 * completes the IN, RAX included, so EAX goes in both places.
	 */
	regs.rax = 6;					/* version */
	regs.rbx = KVM_VMWARE_MAGIC;
	vcpu_regs_set(vcpu, &regs);
	*(uint32_t *)((uint8_t *)run + run->io.data_offset) = 6;
}

static uint64_t boottime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* Run guest_user_backdoor() to its end. */
static void check_user_backdoor(struct kvm_vcpu *vcpu)
{
	uint64_t tsc0, ns0, tsc1, ns1, val[3];
	struct ucall uc;

	vcpu_run(vcpu);
	answer_backdoor_in(vcpu);
	run_to_sync(vcpu, &uc, 1);
	TEST_ASSERT_EQ((uint32_t)uc.args[1], 6);
	TEST_ASSERT_EQ((uint32_t)uc.args[2], KVM_VMWARE_MAGIC);

	tsc0 = rdtsc();
	ns0 = boottime_ns();
	for (int i = 0; i < 3; i++) {
		run_to_sync(vcpu, &uc, 2);
		TEST_ASSERT_EQ(uc.args[1], PMC_HOST_TSC + i);
		val[i] = uc.args[2];
	}
	tsc1 = rdtsc();
	ns1 = boottime_ns();
	TEST_ASSERT(val[0] >= tsc0 && val[0] <= tsc1, "host TSC %lu not in [%lu, %lu]",
		    val[0], tsc0, tsc1);
	TEST_ASSERT(val[1] >= ns0 && val[1] <= ns1, "real time %lu not in [%lu, %lu]",
		    val[1], ns0, ns1);
	/* Apparent time is the guest's kvmclock: it started with the VM. */
	TEST_ASSERT(val[2] > 0 && val[2] < val[1], "apparent time %lu, real %lu",
		    val[2], val[1]);
	run_to_done(vcpu);
}

TEST(backdoor_from_cpl3)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;

	TEST_REQUIRE_BACKDOOR();
	vm = create_vm(&vcpu, guest_user_backdoor);
	finish_user_setup(vm, vcpu);
	check_user_backdoor(vcpu);
	kvm_vm_free(vm);
}

/* Protected pages, the guest's own included, change nothing for it. */
TEST(backdoor_from_cpl3_with_memory_protected)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;

	TEST_REQUIRE_BACKDOOR();
	TEST_REQUIRE(kvm_check_cap(KVM_CAP_X86_WRITE_TRACK) & KVM_WTRACK_ENABLE_EXIT);
	vm = create_vm(&vcpu, guest_user_backdoor);
	finish_user_setup(vm, vcpu);
	vm_enable_wtrack(vm, KVM_WTRACK_ENABLE_EXIT);
	vm_wtrack_protect(vm, DATA_GPA, DATA_PAGES * PAGE_SIZE);
	check_user_backdoor(vcpu);
	kvm_vm_free(vm);
}

static void check_hypercalls_stay_kvm(struct kvm_vm *vm, struct kvm_vcpu *vcpu);

/* guest_hypercalls() in user mode too, the capability available. */
static struct kvm_vm *create_hcall_vm(struct kvm_vcpu **vcpu)
{
	struct kvm_vm *vm = create_vm(vcpu, guest_hypercalls);

	TEST_REQUIRE(vm_check_cap(vm, KVM_CAP_X86_VMWARE_HYPERCALL) == 1);
	finish_user_setup(vm, *vcpu);
	return vm;
}

/* Bad arguments: EINVAL, and the magic stays KVM's. */
TEST(hypercall_cap_errors)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;

	vm = create_hcall_vm(&vcpu);
	ASSERT_EQ(__enable_cap(vm, KVM_CAP_X86_VMWARE_HYPERCALL, 2, 0, 0), -1);
	ASSERT_EQ(errno, EINVAL);
	ASSERT_EQ(__enable_cap(vm, KVM_CAP_X86_VMWARE_HYPERCALL, 1, 1, 0), -1);
	ASSERT_EQ(errno, EINVAL);
	ASSERT_EQ(__enable_cap(vm, KVM_CAP_X86_VMWARE_HYPERCALL, 1, 0, 1), -1);
	ASSERT_EQ(errno, EINVAL);
	check_hypercalls_stay_kvm(vm, vcpu);
	kvm_vm_free(vm);
}

/* What KVM itself answers in RAX to a hypercall it does not know. */
static void check_kvm_answer(struct kvm_vcpu *vcpu, struct bdoor_req *want)
{
	struct ucall uc;
	struct bdoor_req r;

	run_to_sync(vcpu, &uc, 3);
	sync_global_from_guest(vcpu->vm, req);
	r = req;
	TEST_ASSERT_EQ(r.rax, want->rax);
	TEST_ASSERT_EQ(r.rbx, want->rbx);
	TEST_ASSERT_EQ(r.rbp, want->rbp);
}

/* Without the capability, or turned off again, the magic is KVM's. */
static void check_hypercalls_stay_kvm(struct kvm_vm *vm, struct kvm_vcpu *vcpu)
{
	struct bdoor_req want = hcall_req(KVM_VMWARE_MAGIC);

	vcpu_args_set(vcpu, 1, (uint64_t)KVM_VMWARE_MAGIC);
	want.rax = -KVM_ENOSYS;
	check_kvm_answer(vcpu, &want);
	want.rax = -KVM_EPERM;
	check_kvm_answer(vcpu, &want);
	run_to_done(vcpu);
}

TEST(hypercall_off_by_default)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;

	vm = create_vm(&vcpu, guest_hypercalls);
	finish_user_setup(vm, vcpu);
	check_hypercalls_stay_kvm(vm, vcpu);
	kvm_vm_free(vm);
}

TEST(hypercall_turned_off_again)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;

	vm = create_hcall_vm(&vcpu);
	vm_enable_cap(vm, KVM_CAP_X86_VMWARE_HYPERCALL, 1);
	vm_enable_cap(vm, KVM_CAP_X86_VMWARE_HYPERCALL, 0);
	check_hypercalls_stay_kvm(vm, vcpu);
	kvm_vm_free(vm);
}

/* Expect the VMware exit for hcall_req(), at @cpl; answer with new values. */
static void answer_vmware_hypercall(struct kvm_vcpu *vcpu, uint32_t cpl, uint32_t flags)
{
	struct kvm_vmware_exit *e = &vcpu->run->vmware;
	struct bdoor_req in = hcall_req(KVM_VMWARE_MAGIC);
	int r = _vcpu_run(vcpu);

	TEST_ASSERT(!r, "KVM_RUN: %d errno %d", r, errno);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_VMWARE);
	TEST_ASSERT_EQ(e->type, KVM_EXIT_VMWARE_HCALL);
	TEST_ASSERT_EQ(e->flags, flags);
	TEST_ASSERT_EQ(e->hcall.cpl, cpl);
	TEST_ASSERT_EQ(e->hcall.rax, in.rax);
	TEST_ASSERT_EQ(e->hcall.rbx, in.rbx);
	TEST_ASSERT_EQ(e->hcall.rcx, in.rcx);
	TEST_ASSERT_EQ(e->hcall.rdx, in.rdx);
	TEST_ASSERT_EQ(e->hcall.rsi, in.rsi);
	TEST_ASSERT_EQ(e->hcall.rdi, in.rdi);
	TEST_ASSERT_EQ(e->hcall.rbp, in.rbp);

	e->hcall.rax = 0x1a;
	e->hcall.rbx = 0x2b;
	e->hcall.rcx = 0x3c;
	e->hcall.rdx = 0x4d;
	e->hcall.rsi = 0x5e;
	e->hcall.rdi = 0x6f;
	e->hcall.rbp = 0x70;
}

static void check_answered(struct kvm_vcpu *vcpu)
{
	struct ucall uc;
	struct bdoor_req r;

	run_to_sync(vcpu, &uc, 3);
	sync_global_from_guest(vcpu->vm, req);
	r = req;
	TEST_ASSERT(r.rax == 0x1a && r.rbx == 0x2b && r.rcx == 0x3c && r.rdx == 0x4d &&
		    r.rsi == 0x5e && r.rdi == 0x6f && r.rbp == 0x70,
		    "guest got %lx %lx %lx %lx %lx %lx %lx", r.rax, r.rbx, r.rcx, r.rdx,
		    r.rsi, r.rdi, r.rbp);
}

TEST(hypercall_forwarded_from_cpl0_and_cpl3)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;

	vm = create_hcall_vm(&vcpu);
	vm_enable_cap(vm, KVM_CAP_X86_VMWARE_HYPERCALL, 1);
	vcpu_args_set(vcpu, 1, (uint64_t)KVM_VMWARE_MAGIC);

	answer_vmware_hypercall(vcpu, 0, KVM_VMWARE_EXIT_LONG_MODE);
	check_answered(vcpu);
	answer_vmware_hypercall(vcpu, 3, KVM_VMWARE_EXIT_LONG_MODE);
	check_answered(vcpu);
	run_to_done(vcpu);
	kvm_vm_free(vm);
}

/* With the capability on, other hypercalls are KVM's as before. */
TEST(hypercall_without_magic_is_kvms)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct bdoor_req want = hcall_req(0x4d4d);

	vm = create_hcall_vm(&vcpu);
	vm_enable_cap(vm, KVM_CAP_X86_VMWARE_HYPERCALL, 1);
	vcpu_args_set(vcpu, 1, 0x4d4dULL);

	want.rax = -KVM_ENOSYS;
	check_kvm_answer(vcpu, &want);
	want.rax = -KVM_EPERM;
	check_kvm_answer(vcpu, &want);
	run_to_done(vcpu);
	kvm_vm_free(vm);
}

TEST(hypercall_next_to_hyperv)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	vm_vaddr_t page;

	TEST_REQUIRE(kvm_has_cap(KVM_CAP_HYPERV_CPUID));
	vm = create_vm(&vcpu, guest_hyperv_then_vmware);
	TEST_REQUIRE(vm_check_cap(vm, KVM_CAP_X86_VMWARE_HYPERCALL) == 1);
	vcpu_set_hv_cpuid(vcpu);
	vm_enable_cap(vm, KVM_CAP_X86_VMWARE_HYPERCALL, 1);
	page = vm_vaddr_alloc_page(vm);
	vcpu_args_set(vcpu, 1, addr_gva2gpa(vm, page));

	answer_vmware_hypercall(vcpu, 0, KVM_VMWARE_EXIT_LONG_MODE);
	check_answered(vcpu);
	run_to_done(vcpu);
	kvm_vm_free(vm);
}

/* --- REP INSB on the high-bandwidth port into protected pages --------- */

/* The port's stream: byte n of it is hb_byte(n). */
static uint8_t hb_byte(int n)
{
	return 0xa0 + n;
}

FIXTURE(hb) {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
	int given;		/* bytes of the stream the port gave */
	int ring_fd;
	pthread_t consumer;
	volatile bool stop;
	int events;
};

FIXTURE_VARIANT(hb) {
	bool ring;
};

FIXTURE_VARIANT_ADD(hb, exit) { .ring = false };
FIXTURE_VARIANT_ADD(hb, ring) { .ring = true };

FIXTURE_SETUP(hb)
{
	uint64_t mode = variant->ring ? KVM_WTRACK_ENABLE_RING : KVM_WTRACK_ENABLE_EXIT;
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_X86_WRITE_TRACK, .args = { mode, variant->ring ? 16 : 0 },
	};

	TEST_REQUIRE_BACKDOOR();
	TEST_REQUIRE(kvm_check_cap(KVM_CAP_X86_WRITE_TRACK) & mode);
	self->vm = create_vm(&self->vcpu, guest_hb_insb);
	finish_user_setup(self->vm, self->vcpu);
	memset(addr_gpa2hva(self->vm, DATA_GPA), 0, DATA_PAGES * PAGE_SIZE);
	vcpu_args_set(self->vcpu, 1, HB_BUF);
	vm_ioctl(self->vm, KVM_ENABLE_CAP, &cap);
	self->ring_fd = -1;
	if (variant->ring) {
		self->ring_fd = __vm_ioctl(self->vm, KVM_WTRACK_RING_FD, NULL);
		ASSERT_GE(self->ring_fd, 0);
		fcntl(self->ring_fd, F_SETFL, O_NONBLOCK);
	}
}

FIXTURE_TEARDOWN(hb)
{
	kvm_vm_free(self->vm);
	if (self->ring_fd >= 0)
		close(self->ring_fd);
}

/* Ring mode's consumer: each event's page is unprotected, in turn. */
static void *hb_consumer(void *arg)
{
	FIXTURE_DATA(hb) *self = arg;
	struct pollfd pfd = { .fd = self->ring_fd, .events = POLLIN };
	struct kvm_wtrack_event ev;

	while (!self->stop) {
		if (poll(&pfd, 1, 20) <= 0)
			continue;
		while (read(self->ring_fd, &ev, sizeof(ev)) == sizeof(ev)) {
			self->events++;
			vm_wtrack_unprotect(self->vm, ev.gpa & ~(PAGE_SIZE - 1ULL),
					    PAGE_SIZE);
		}
	}
	return NULL;
}

/* Give the next chunk of the stream to a KVM_EXIT_IO of REP INSB. */
static void give_hb_chunk(FIXTURE_DATA(hb) *self)
{
	struct kvm_run *run = self->vcpu->run;

	TEST_ASSERT_KVM_EXIT_REASON(self->vcpu, KVM_EXIT_IO);
	TEST_ASSERT_EQ(run->io.port, BDOOR_PORT_HB);
	TEST_ASSERT_EQ(run->io.direction, KVM_EXIT_IO_IN);
	TEST_ASSERT_EQ(run->io.size, 1);
	for (uint32_t i = 0; i < run->io.count; i++)
		((uint8_t *)run + run->io.data_offset)[i] = hb_byte(self->given + i);
	self->given += run->io.count;
}

static bool hb_untouched(FIXTURE_DATA(hb) *self, uint64_t gpa, int len)
{
	uint8_t *p = addr_gpa2hva(self->vm, gpa);

	for (int i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

/*
 * Exit mode, step by step: stopped before the first port read; the first
 * chunk's page protected again while userspace answers it, and the data
 * held; the second chunk stopped at its page before its port read.
 */
static void hb_exit_mode(struct __test_metadata *_metadata, FIXTURE_DATA(hb) *self)
{
	vm_wtrack_protect(self->vm, PAGE(0), 2 * PAGE_SIZE);
	vcpu_run_to_wtrack_exit(self->vcpu, HB_BUF);
	ASSERT_EQ(self->given, 0);

	vm_wtrack_unprotect(self->vm, PAGE(0), PAGE_SIZE);
	vcpu_run(self->vcpu);
	vm_wtrack_protect(self->vm, PAGE(0), PAGE_SIZE);
	give_hb_chunk(self);
	ASSERT_EQ(self->given, 16);
	vcpu_run_to_wtrack_exit(self->vcpu, HB_BUF);
	ASSERT_TRUE(hb_untouched(self, HB_BUF, HB_LEN));

	vm_wtrack_unprotect(self->vm, PAGE(0), PAGE_SIZE);
	vcpu_run_to_wtrack_exit(self->vcpu, PAGE(1));
	ASSERT_TRUE(hb_untouched(self, PAGE(1), 32));

	vm_wtrack_unprotect(self->vm, PAGE(1), PAGE_SIZE);
	vcpu_run(self->vcpu);
	give_hb_chunk(self);
	run_to_done(self->vcpu);
}

/*
 * Ring mode: the vCPU waits in KVM_RUN for the consumer's unprotect, on
 * each page, and on the first page again after it is protected while
 * userspace answers the port: three events.
 */
static void hb_ring_mode(struct __test_metadata *_metadata, FIXTURE_DATA(hb) *self)
{
	vm_wtrack_protect(self->vm, PAGE(0), 2 * PAGE_SIZE);
	pthread_create(&self->consumer, NULL, hb_consumer, self);

	vcpu_run(self->vcpu);
	vm_wtrack_protect(self->vm, PAGE(0), PAGE_SIZE);
	give_hb_chunk(self);
	ASSERT_EQ(self->given, 16);
	vcpu_run(self->vcpu);
	give_hb_chunk(self);
	run_to_done(self->vcpu);

	self->stop = true;
	pthread_join(self->consumer, NULL);
	ASSERT_EQ(self->events, 3);
}

/* Every byte of the port's stream lands once, in order. */
TEST_F(hb, rep_insb_into_protected_pages)
{
	uint8_t *buf = addr_gpa2hva(self->vm, HB_BUF);

	if (variant->ring)
		hb_ring_mode(_metadata, self);
	else
		hb_exit_mode(_metadata, self);

	ASSERT_EQ(self->given, HB_LEN);
	for (int i = 0; i < HB_LEN; i++)
		ASSERT_EQ(buf[i], hb_byte(i));
}

/* --- Nested: whose is L2's backdoor? ---------------------------------- */

/* What L1 tells the host about each exit from L2. */
enum l1_report { L1_SAW_GP = 1, L1_SAW_HCALL_CPL3, L1_SAW_HCALL_CPL0 };

#define L2_STACK_WORDS	256
/* L2 starts as if called: RSP 8 bytes off 16-byte alignment, for SSE. */
#define L2_STACK_TOP(stack)	(&(stack)[L2_STACK_WORDS - 1])

/* What L2 got from the backdoor port and the real-time pseudo-PMC. */
static uint64_t l2_port_eax, l2_real_time;

/*
 * L2: at CPL3 the backdoor port, a pseudo-PMC, a backdoor hypercall and a
 * plain port; then at CPL0 a hypercall that ends it.
 */
static void l2_code(void)
{
	req = in_req(BDOOR_PORT);
	user_bdoor(&req);
	l2_port_eax = (uint32_t)req.rax;
	req = rdpmc_req(PMC_REAL_TIME);
	user_bdoor(&req);
	l2_real_time = pmc_value();
	req = hcall_req(KVM_VMWARE_MAGIC);
	user_bdoor(&req);
	req = in_req(PLAIN_PORT);
	user_bdoor(&req);

	req = hcall_req(0);
	bdoor_op(&req);
}

/* Step L2 over what L1 just handled for it. */
static void l1_svm_code(struct svm_test_data *svm)
{
	unsigned long l2_stack[L2_STACK_WORDS] __aligned(16);
	struct vmcb *vmcb = svm->vmcb;

	generic_svm_setup(svm, l2_code, L2_STACK_TOP(l2_stack));
	vmcb->control.intercept_exceptions |= 1u << GP_VECTOR;
	for (;;) {
		run_guest(vmcb, svm->vmcb_gpa);
		switch (vmcb->control.exit_code) {
		case SVM_EXIT_EXCP_BASE + GP_VECTOR:
			GUEST_SYNC1(L1_SAW_GP);
			vmcb->save.rip += insn_len(vmcb->save.rip);
			break;
		case SVM_EXIT_VMMCALL:
			if (vmcb->save.cpl == 0) {
				GUEST_SYNC1(L1_SAW_HCALL_CPL0);
				GUEST_DONE();
			}
			GUEST_SYNC1(L1_SAW_HCALL_CPL3);
			vmcb->save.rip += 3;
			break;
		default:
			GUEST_FAIL("L2 exit 0x%lx", (unsigned long)vmcb->control.exit_code);
		}
	}
}

static void l1_vmx_code(struct vmx_pages *vmx)
{
	unsigned long l2_stack[L2_STACK_WORDS] __aligned(16);
	bool launched = false;
	uint32_t reason;

	GUEST_ASSERT(prepare_for_vmx_operation(vmx));
	GUEST_ASSERT(load_vmcs(vmx));
	prepare_vmcs(vmx, l2_code, L2_STACK_TOP(l2_stack));
	GUEST_ASSERT(!vmwrite(EXCEPTION_BITMAP, vmreadz(EXCEPTION_BITMAP) | (1u << GP_VECTOR)));
	for (;;) {
		GUEST_ASSERT(!(launched ? vmresume() : vmlaunch()));
		launched = true;
		reason = vmreadz(VM_EXIT_REASON);
		if (reason == EXIT_REASON_EXCEPTION_NMI) {
			GUEST_ASSERT_EQ(vmreadz(VM_EXIT_INTR_INFO) & 0xff, GP_VECTOR);
			GUEST_SYNC1(L1_SAW_GP);
			vmwrite(GUEST_RIP, vmreadz(GUEST_RIP) + insn_len(vmreadz(GUEST_RIP)));
		} else if (reason == EXIT_REASON_VMCALL) {
			if (!(vmreadz(GUEST_CS_SELECTOR) & 3)) {
				GUEST_SYNC1(L1_SAW_HCALL_CPL0);
				GUEST_DONE();
			}
			GUEST_SYNC1(L1_SAW_HCALL_CPL3);
			vmwrite(GUEST_RIP, vmreadz(GUEST_RIP) + 3);
		} else {
			GUEST_FAIL("L2 exit reason %u", reason);
		}
	}
}

FIXTURE(nested) {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
};

FIXTURE_VARIANT(nested) {
	bool vmx;
	bool l0;	/* KVM_CAP_X86_VMWARE_NESTED_BACKDOOR_L0 on */
};

FIXTURE_VARIANT_ADD(nested, svm_l1) { .vmx = false, .l0 = false };
FIXTURE_VARIANT_ADD(nested, svm_l0) { .vmx = false, .l0 = true };
FIXTURE_VARIANT_ADD(nested, vmx_l1) { .vmx = true, .l0 = false };
FIXTURE_VARIANT_ADD(nested, vmx_l0) { .vmx = true, .l0 = true };

FIXTURE_SETUP(nested)
{
	vm_vaddr_t gva;

	TEST_REQUIRE_BACKDOOR();
	if (variant->vmx) {
		TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_VMX));
		self->vm = create_vm(&self->vcpu, l1_vmx_code);
		vcpu_alloc_vmx(self->vm, &gva);
	} else {
		TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_SVM));
		self->vm = create_vm(&self->vcpu, l1_svm_code);
		vcpu_alloc_svm(self->vm, &gva);
	}
	vcpu_args_set(self->vcpu, 1, gva);
	finish_user_setup(self->vm, self->vcpu);
	TEST_REQUIRE(vm_check_cap(self->vm, KVM_CAP_X86_VMWARE_NESTED_BACKDOOR_L0) == 1);
	vm_enable_cap(self->vm, KVM_CAP_X86_VMWARE_HYPERCALL, 1);
	if (variant->l0)
		vm_enable_cap(self->vm, KVM_CAP_X86_VMWARE_NESTED_BACKDOOR_L0, 1);
}

FIXTURE_TEARDOWN(nested)
{
	kvm_vm_free(self->vm);
}

static void expect_l1(struct kvm_vcpu *vcpu, enum l1_report what)
{
	struct ucall uc;

	run_to_sync(vcpu, &uc, what);
}

TEST_F(nested, backdoor_of_l2)
{
	struct kvm_vcpu *vcpu = self->vcpu;
	uint64_t ns0 = boottime_ns(), ns1;

	if (variant->l0) {
		/* Port, PMC and hypercall stay in L0: the vCPU is in L2. */
		vcpu_run(vcpu);
		answer_backdoor_in(vcpu);
		answer_vmware_hypercall(vcpu, 3, KVM_VMWARE_EXIT_LONG_MODE |
					KVM_VMWARE_EXIT_GUEST_MODE);
	} else {
		expect_l1(vcpu, L1_SAW_GP);
		expect_l1(vcpu, L1_SAW_GP);
		expect_l1(vcpu, L1_SAW_HCALL_CPL3);
	}
	/* A plain port and CPL0's hypercall are L1's either way. */
	expect_l1(vcpu, L1_SAW_GP);
	expect_l1(vcpu, L1_SAW_HCALL_CPL0);
	run_to_done(vcpu);
	ns1 = boottime_ns();

	/* Without the option L1 stepped over both: L2 got nothing. */
	sync_global_from_guest(self->vm, l2_port_eax);
	sync_global_from_guest(self->vm, l2_real_time);
	if (variant->l0) {
		TEST_ASSERT_EQ(l2_port_eax, 6);
		TEST_ASSERT(l2_real_time >= ns0 && l2_real_time <= ns1,
			    "L2's real time %lu not in [%lu, %lu]", l2_real_time, ns0, ns1);
	} else {
		TEST_ASSERT_EQ(l2_port_eax, KVM_VMWARE_MAGIC);
		TEST_ASSERT_EQ(l2_real_time, 0);
	}
}

TEST(nested_cap_errors)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;

	vm = vm_create_with_one_vcpu(&vcpu, guest_hypercalls);
	if (!backdoor_enabled()) {
		ASSERT_EQ(vm_check_cap(vm, KVM_CAP_X86_VMWARE_NESTED_BACKDOOR_L0), 0);
		ASSERT_EQ(__enable_cap(vm, KVM_CAP_X86_VMWARE_NESTED_BACKDOOR_L0, 1, 0, 0), -1);
		ASSERT_EQ(errno, EINVAL);
	} else {
		ASSERT_EQ(vm_check_cap(vm, KVM_CAP_X86_VMWARE_NESTED_BACKDOOR_L0), 1);
		ASSERT_EQ(__enable_cap(vm, KVM_CAP_X86_VMWARE_NESTED_BACKDOOR_L0, 2, 0, 0), -1);
		ASSERT_EQ(errno, EINVAL);
		ASSERT_EQ(__enable_cap(vm, KVM_CAP_X86_VMWARE_NESTED_BACKDOOR_L0, 1, 0, 0), 0);
		ASSERT_EQ(__enable_cap(vm, KVM_CAP_X86_VMWARE_NESTED_BACKDOOR_L0, 0, 0, 0), 0);
	}
	kvm_vm_free(vm);
}

TEST_HARNESS_MAIN
