// SPDX-License-Identifier: GPL-2.0
/*
 * Writers of guest memory that the table in Documentation/wtrack.rst
 * lists, each reported as it says, in exit mode:
 *
 * - Guest instructions that KVM carries out itself are stopped before
 *   they write a protected page, like any guest write: VMSAVE (SVM);
 *   VMPTRST, VMREAD to memory and VMCLEAR (VMX).  Before, their writes
 *   landed and were reported after the fact.
 * - Xen's writes through its pfn caches, which do not dirty their page,
 *   are reported as landed: the shared-info wallclock, written when
 *   userspace sets the shared-info page, and event channel delivery into
 *   the shared-info page and vcpu_info, here sent by an ioctl, outside
 *   any vCPU, and the Xen pvclock in a vcpu_info set up by host address.
 *   Before, they landed unseen.
 * - A guest write stopped on a page that KVM wrote and has not reported
 *   yet reports that landed write, not a stop whose page a VMM would
 *   copy as the old contents.
 *
 * The VMX cases need VMX, which software emulation does not have: they
 * skip there.
 */
#include <pthread.h>

#include "kvm_util.h"
#include "processor.h"
#include "svm_util.h"
#include "vmx.h"
#include "kselftest_harness.h"
#include "wtrack_util.h"

#define DATA_GPA	0xc0000000ULL
#define DATA_SLOT	1
#define DATA_PAGES	4
#define PAGE(n)		(DATA_GPA + (n) * PAGE_SIZE)
#define XEN_HYPERCALL_MSR	0x40000200
#define EVTCHN_PORT	5
#define VCPU_INFO_OFFSET	0x40

static void guest_vmsave(uint64_t gpa)
{
	wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SVME);
	GUEST_SYNC(1);
	asm volatile("vmsave %%rax" : : "a"(gpa) : "memory");
	GUEST_SYNC(2);
}

static void guest_vmx(struct vmx_pages *vmx, uint64_t gpa)
{
	uint64_t vmcs_gpa = vmx->vmcs_gpa;

	GUEST_ASSERT(prepare_for_vmx_operation(vmx));
	GUEST_ASSERT(load_vmcs(vmx));
	GUEST_SYNC(1);
	asm volatile("vmptrst (%0)" : : "r"(gpa) : "cc", "memory");
	GUEST_SYNC(2);
	asm volatile("vmread %1, (%0)" : : "r"(gpa + 8), "r"((uint64_t)GUEST_RIP)
		     : "cc", "memory");
	GUEST_SYNC(3);
	asm volatile("vmclear %0" : : "m"(vmcs_gpa) : "cc", "memory");
	GUEST_SYNC(4);
}

static void guest_idle(void)
{
	for (;;)
		GUEST_SYNC(0);
}

static struct kvm_vm *create_vm(struct kvm_vcpu **vcpu, void *code)
{
	struct kvm_vm *vm = vm_create_with_one_vcpu(vcpu, code);

	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, DATA_GPA,
				    DATA_SLOT, DATA_PAGES, 0);
	virt_map(vm, DATA_GPA, DATA_GPA, DATA_PAGES);
	vm_enable_wtrack(vm, KVM_WTRACK_ENABLE_EXIT);
	return vm;
}

static bool all_zero(const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n--)
		if (*b++)
			return false;
	return true;
}

TEST(vmsave_is_stopped)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_X86_WRITE_TRACK) & KVM_WTRACK_ENABLE_EXIT);
	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_SVM));
	vm = create_vm(&vcpu, guest_vmsave);
	vcpu_args_set(vcpu, 1, PAGE(1));
	memset(addr_gpa2hva(vm, PAGE(1)), 0, PAGE_SIZE);
	vcpu_run_to_ucall(vcpu, UCALL_SYNC);

	vm_wtrack_protect(vm, PAGE(1), PAGE_SIZE);
	vcpu_run_to_wtrack_stop_in(vcpu, PAGE(1));
	/* Stopped, not done: the page is as it was, and VMSAVE is retried. */
	ASSERT_TRUE(all_zero(addr_gpa2hva(vm, PAGE(1)), PAGE_SIZE));
	vcpu_run_to_wtrack_stop_in(vcpu, PAGE(1));

	vm_wtrack_unprotect(vm, PAGE(1), PAGE_SIZE);
	vcpu_run_to_ucall(vcpu, UCALL_SYNC);
	/* The save area now holds at least the GS base KVM set up. */
	ASSERT_FALSE(all_zero(addr_gpa2hva(vm, PAGE(1)), PAGE_SIZE));
	kvm_vm_free(vm);
}

TEST(vmx_instructions_are_stopped)
{
	vm_vaddr_t vmx_gva;
	struct vmx_pages *vmx;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_X86_WRITE_TRACK) & KVM_WTRACK_ENABLE_EXIT);
	if (!kvm_cpu_has(X86_FEATURE_VMX))
		SKIP(return, "no VMX (software emulation of an AMD CPU has none)");
	vm = create_vm(&vcpu, guest_vmx);
	vmx = vcpu_alloc_vmx(vm, &vmx_gva);
	vcpu_args_set(vcpu, 2, vmx_gva, PAGE(1));
	vcpu_run_to_ucall(vcpu, UCALL_SYNC);

	/* VMPTRST and VMREAD to a protected page. */
	vm_wtrack_protect(vm, PAGE(1), PAGE_SIZE);
	vcpu_run_to_wtrack_exit(vcpu, PAGE(1));
	vm_wtrack_unprotect(vm, PAGE(1), PAGE_SIZE);
	vcpu_run_to_ucall(vcpu, UCALL_SYNC);
	ASSERT_EQ(*(uint64_t *)addr_gpa2hva(vm, PAGE(1)), vmx->vmcs_gpa);

	vm_wtrack_protect(vm, PAGE(1), PAGE_SIZE);
	vcpu_run_to_wtrack_exit(vcpu, PAGE(1) + 8);
	vm_wtrack_unprotect(vm, PAGE(1), PAGE_SIZE);
	vcpu_run_to_ucall(vcpu, UCALL_SYNC);

	/* VMCLEAR of the current VMCS writes it back whole. */
	vm_wtrack_protect(vm, vmx->vmcs_gpa, PAGE_SIZE);
	vcpu_run_to_wtrack_exit(vcpu, vmx->vmcs_gpa);
	vm_wtrack_unprotect(vm, vmx->vmcs_gpa, PAGE_SIZE);
	vcpu_run_to_ucall(vcpu, UCALL_SYNC);
	kvm_vm_free(vm);
}

/*
 * Run to the guest's next ucall; every KVM_EXIT_WTRACK_LANDED on the way
 * must be of a page in @pages, and each of them must come.  (KVM may also
 * write a page itself on the way: a clock update writes vcpu_info.)
 */
static void run_expecting_landed(struct kvm_vcpu *vcpu, const uint64_t *pages, int n)
{
	struct kvm_run *run = vcpu->run;
	bool seen[4] = {};
	int i;

	TEST_ASSERT(n <= ARRAY_SIZE(seen), "too many pages");
	for (;;) {
		vcpu_run(vcpu);
		if (run->exit_reason != KVM_EXIT_WTRACK_LANDED)
			break;
		TEST_ASSERT_EQ(run->wtrack_landed.flags, KVM_WTRACK_EVENT_LANDED);
		TEST_ASSERT_EQ(run->wtrack_landed.size, PAGE_SIZE);
		for (i = 0; i < n && pages[i] != run->wtrack_landed.gpa; i++)
			;
		TEST_ASSERT(i < n, "landed write to 0x%llx", run->wtrack_landed.gpa);
		seen[i] = true;
	}
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
	TEST_ASSERT_EQ(get_ucall(vcpu, NULL), UCALL_SYNC);
	for (i = 0; i < n; i++)
		TEST_ASSERT(seen[i], "no report of the write to 0x%lx", pages[i]);
}

#define XEN_VCPUS	4
/* Past the shared info, which an event channel writes. */
#define INSB_OFFSET	0xf00
#define IO_PORT		0x1234

/* An INSB into PAGE(0), with the byte that userspace answers. */
static void guest_insb(void)
{
	uint64_t addr = PAGE(0) + INSB_OFFSET;

	asm volatile("insb" : "+D"(addr) : "d"(IO_PORT) : "memory");
	GUEST_SYNC(1);
}

/* A Xen HVM guest with @nr vCPUs running @code, in exit mode. */
static struct kvm_vm *create_xen_vm(struct kvm_vcpu **vcpus, int nr, void *code)
{
	int caps = kvm_check_cap(KVM_CAP_XEN_HVM);
	struct kvm_xen_hvm_config hvmc = {
		.flags = KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL | KVM_XEN_HVM_CONFIG_EVTCHN_SEND,
		.msr = XEN_HYPERCALL_MSR,
	};
	struct kvm_xen_hvm_attr lm = {
		.type = KVM_XEN_ATTR_TYPE_LONG_MODE,
		.u.long_mode = 1,
	};
	struct kvm_vm *vm;

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_X86_WRITE_TRACK) & KVM_WTRACK_ENABLE_EXIT);
	TEST_REQUIRE(caps & KVM_XEN_HVM_CONFIG_SHARED_INFO);
	TEST_REQUIRE(caps & KVM_XEN_HVM_CONFIG_EVTCHN_SEND);
	vm = vm_create_with_vcpus(nr, code, vcpus);
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, DATA_GPA,
				    DATA_SLOT, DATA_PAGES + XEN_VCPUS, 0);
	virt_map(vm, DATA_GPA, DATA_GPA, DATA_PAGES + XEN_VCPUS);
	vm_enable_wtrack(vm, KVM_WTRACK_ENABLE_EXIT);
	vm_ioctl(vm, KVM_XEN_HVM_CONFIG, &hvmc);
	vm_ioctl(vm, KVM_XEN_HVM_SET_ATTR, &lm);
	return vm;
}

FIXTURE(xen) {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpus[XEN_VCPUS];
	struct kvm_vcpu *vcpu;
	int nr_vcpus;
};

FIXTURE_VARIANT(xen) {
	int nr_vcpus;
};

FIXTURE_VARIANT_ADD(xen, one_vcpu) { .nr_vcpus = 1 };
FIXTURE_VARIANT_ADD(xen, four_vcpus) { .nr_vcpus = XEN_VCPUS };

FIXTURE_SETUP(xen)
{
	self->nr_vcpus = variant->nr_vcpus;
	self->vm = create_xen_vm(self->vcpus, self->nr_vcpus, guest_idle);
	self->vcpu = self->vcpus[0];
}

FIXTURE_TEARDOWN(xen)
{
	kvm_vm_free(self->vm);
}

static void set_shared_info(struct kvm_vm *vm, uint64_t gpa)
{
	struct kvm_xen_hvm_attr ha = {
		.type = KVM_XEN_ATTR_TYPE_SHARED_INFO,
		.u.shared_info.gfn = gpa / PAGE_SIZE,
	};

	vm_ioctl(vm, KVM_XEN_HVM_SET_ATTR, &ha);
}

/* vCPU @i's vcpu_info, on page 1 + @i. */
static void set_vcpu_info(struct kvm_vcpu *vcpu, int i)
{
	struct kvm_xen_vcpu_attr vi = {
		.type = KVM_XEN_VCPU_ATTR_TYPE_VCPU_INFO,
		.u.gpa = PAGE(1 + i) + VCPU_INFO_OFFSET,
	};

	vcpu_ioctl(vcpu, KVM_XEN_VCPU_SET_ATTR, &vi);
}

static void send_event(struct kvm_vm *vm, int port, struct kvm_vcpu *vcpu)
{
	struct kvm_irq_routing_xen_evtchn e = {
		.port = port,
		.vcpu = vcpu->id,
		.priority = KVM_IRQ_ROUTING_XEN_EVTCHN_PRIO_2LEVEL,
	};

	vm_ioctl(vm, KVM_XEN_HVM_EVTCHN_SEND, &e);
}

/*
 * A vcpu_info set up by host address has no memslot: the Xen pvclock that
 * KVM writes into it on the clock update that setting it asks for is
 * reported all the same.  Before, writes through such a cache were not.
 */
TEST(xen_vcpu_info_by_host_address_is_reported)
{
	const uint64_t pages[] = { PAGE(1) };
	struct kvm_xen_vcpu_attr vi = {
		.type = KVM_XEN_VCPU_ATTR_TYPE_VCPU_INFO_HVA,
	};
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_XEN_HVM) & KVM_XEN_HVM_CONFIG_SHARED_INFO_HVA);
	vm = create_xen_vm(&vcpu, 1, guest_idle);
	vcpu_run_to_ucall(vcpu, UCALL_SYNC);

	vm_wtrack_protect(vm, PAGE(1), PAGE_SIZE);
	vi.u.hva = (uintptr_t)addr_gpa2hva(vm, PAGE(1) + VCPU_INFO_OFFSET);
	vcpu_ioctl(vcpu, KVM_XEN_VCPU_SET_ATTR, &vi);
	run_expecting_landed(vcpu, pages, ARRAY_SIZE(pages));
	kvm_vm_free(vm);
}

/* Setting the shared-info page writes its wallclock, from the ioctl. */
TEST_F(xen, wallclock_is_reported)
{
	const uint64_t pages[] = { PAGE(0) };

	vcpu_run_to_ucall(self->vcpu, UCALL_SYNC);
	vm_wtrack_protect(self->vm, PAGE(0), PAGE_SIZE);
	set_shared_info(self->vm, PAGE(0));
	run_expecting_landed(self->vcpu, pages, ARRAY_SIZE(pages));
}

/*
 * KVM_RUN with immediate_exit reports what KVM wrote outside any vCPU,
 * so that a VMM pausing its vCPUs learns of it: before, it returned EINTR
 * and the report waited for the next entry into the guest.
 */
TEST_F(xen, immediate_exit_reports_what_landed)
{
	struct kvm_run *run = self->vcpu->run;

	vcpu_run_to_ucall(self->vcpu, UCALL_SYNC);
	vm_wtrack_protect(self->vm, PAGE(0), PAGE_SIZE);
	set_shared_info(self->vm, PAGE(0));

	run->immediate_exit = 1;
	ASSERT_EQ(__vcpu_run(self->vcpu), 0);
	ASSERT_EQ(run->exit_reason, KVM_EXIT_WTRACK_LANDED);
	ASSERT_EQ(run->wtrack_landed.gpa, PAGE(0));
	ASSERT_EQ(__vcpu_run(self->vcpu), -1);
	ASSERT_EQ(errno, EINTR);
	run->immediate_exit = 0;
	vcpu_run_to_ucall(self->vcpu, UCALL_SYNC);
}

/* Pages of the Xen test's landed exits, counted by the vCPUs' threads. */
static int landed_seen[1 + XEN_VCPUS];

/* Run to the guest's next ucall, counting the landed exits on the way. */
static void *count_landed_thread(void *arg)
{
	struct kvm_vcpu *vcpu = arg;
	struct kvm_run *run = vcpu->run;
	uint64_t page;

	for (;;) {
		vcpu_run(vcpu);
		if (run->exit_reason != KVM_EXIT_WTRACK_LANDED)
			break;
		page = (run->wtrack_landed.gpa - PAGE(0)) / PAGE_SIZE;
		TEST_ASSERT(run->wtrack_landed.gpa >= PAGE(0) &&
			    page < ARRAY_SIZE(landed_seen),
			    "landed write to 0x%llx", run->wtrack_landed.gpa);
		__atomic_add_fetch(&landed_seen[page], 1, __ATOMIC_RELAXED);
	}
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
	return NULL;
}

/*
 * Event channels sent by an ioctl write the shared info and each target's
 * vcpu_info, queued for the VM; every vCPU is asked to report them, and
 * all run at once, yet each page is reported once.
 */
TEST_F(xen, event_channels_are_each_reported_once)
{
	pthread_t threads[XEN_VCPUS];
	int i;

	set_shared_info(self->vm, PAGE(0));
	for (i = 0; i < self->nr_vcpus; i++) {
		set_vcpu_info(self->vcpus[i], i);
		vcpu_run_to_ucall(self->vcpus[i], UCALL_SYNC);
	}

	memset(landed_seen, 0, sizeof(landed_seen));
	vm_wtrack_protect(self->vm, PAGE(0), (1 + self->nr_vcpus) * PAGE_SIZE);
	for (i = 0; i < self->nr_vcpus; i++)
		send_event(self->vm, EVTCHN_PORT + i, self->vcpus[i]);
	for (i = 0; i < self->nr_vcpus; i++)
		pthread_create(&threads[i], NULL, count_landed_thread, self->vcpus[i]);
	for (i = 0; i < self->nr_vcpus; i++)
		pthread_join(threads[i], NULL);

	for (i = 0; i <= self->nr_vcpus; i++) {
		TH_LOG("page %d reported %d times", i, landed_seen[i]);
		ASSERT_EQ(landed_seen[i], 1);
	}
}

/*
 * A guest write to a page that KVM wrote and has not reported yet is not
 * reported as a stop, whose page a VMM would copy as the old contents:
 * the landed write is reported instead, and the guest's write goes on.
 * The stop comes before the vCPU's next entry, which would report the
 * landed write, when KVM_RUN completes an INSB whose page was protected
 * and written by an event channel while userspace answered the I/O.
 */
TEST(xen_stop_after_a_landed_write_reports_it_first)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm = create_xen_vm(&vcpu, 1, guest_insb);
	uint8_t *dst = addr_gpa2hva(vm, PAGE(0) + INSB_OFFSET);
	struct kvm_run *run = vcpu->run;

	set_shared_info(vm, PAGE(0));
	set_vcpu_info(vcpu, 0);
	vcpu_run(vcpu);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
	ASSERT_EQ(run->io.port, IO_PORT);
	ASSERT_EQ(run->io.direction, KVM_EXIT_IO_IN);
	*((uint8_t *)run + run->io.data_offset) = 0xa5;

	vm_wtrack_protect(vm, PAGE(0), PAGE_SIZE);
	send_event(vm, EVTCHN_PORT, vcpu);

	ASSERT_EQ(__vcpu_run(vcpu), 0);
	ASSERT_EQ(run->exit_reason, KVM_EXIT_WTRACK_LANDED);
	ASSERT_EQ(run->wtrack_landed.gpa, PAGE(0));
	ASSERT_EQ(*dst, 0);
	/* The page is unprotected, and the INSB ends with the byte it held. */
	vcpu_run_to_ucall(vcpu, UCALL_SYNC);
	ASSERT_EQ(*dst, 0xa5);
	kvm_vm_free(vm);
}

TEST_HARNESS_MAIN
