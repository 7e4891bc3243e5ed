// SPDX-License-Identifier: GPL-2.0
/*
 * KVM_CAP_X86_WRITE_TRACK discovery and enabling: the flags mask reported by
 * KVM_CHECK_EXTENSION, refusals that change nothing, and a guest that runs
 * to completion with tracking enabled.
 */
#include "kvm_util.h"
#include "processor.h"
#include "kselftest_harness.h"
#include "wtrack_util.h"

#define DATA_GPA	0xc0000000ULL
#define DATA_SLOT	1
#define DATA_PAGES	16
#define MAGIC		0x5741524bULL

static void guest_write_pages(void)
{
	uint64_t *p = (uint64_t *)DATA_GPA;
	int i;

	for (i = 0; i < DATA_PAGES; i++)
		p[i * PAGE_SIZE / sizeof(*p)] = MAGIC + i;
	GUEST_DONE();
}

static int __enable_wtrack(struct kvm_vm *vm, uint32_t flags, uint64_t args0,
			   uint64_t args1)
{
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_X86_WRITE_TRACK,
		.flags = flags,
		.args = { args0, args1 },
	};

	return __vm_ioctl(vm, KVM_ENABLE_CAP, &cap);
}

FIXTURE(wtrack) {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
};

FIXTURE_SETUP(wtrack)
{
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_X86_WRITE_TRACK));

	self->vm = vm_create_with_one_vcpu(&self->vcpu, guest_write_pages);
	vm_userspace_mem_region_add(self->vm, VM_MEM_SRC_ANONYMOUS, DATA_GPA,
				    DATA_SLOT, DATA_PAGES, 0);
	virt_map(self->vm, DATA_GPA, DATA_GPA, DATA_PAGES);
}

FIXTURE_TEARDOWN(wtrack)
{
	kvm_vm_free(self->vm);
}

static void assert_guest_wrote(struct kvm_vm *vm)
{
	int i;

	for (i = 0; i < DATA_PAGES; i++) {
		uint64_t *p = addr_gpa2hva(vm, DATA_GPA + i * PAGE_SIZE);

		TEST_ASSERT_EQ(*p, MAGIC + i);
	}
}

TEST_F(wtrack, reports_supported_flags)
{
	ASSERT_EQ(kvm_check_cap(KVM_CAP_X86_WRITE_TRACK),
		  KVM_WTRACK_ENABLE_VALID_MASK);
	ASSERT_EQ(vm_check_cap(self->vm, KVM_CAP_X86_WRITE_TRACK),
		  KVM_WTRACK_ENABLE_VALID_MASK);
}

/*
 * 1024 was the pre-release ABI's number, which this kernel does not have:
 * asking for it must not look like support.
 */
#define KVM_CAP_X86_WRITE_TRACK_PRERELEASE	1024

TEST_F(wtrack, prerelease_number_is_not_answered)
{
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_X86_WRITE_TRACK_PRERELEASE,
		.args = { KVM_WTRACK_ENABLE_EXIT },
	};

	ASSERT_EQ(KVM_CAP_X86_WRITE_TRACK, 1025);
	ASSERT_EQ(kvm_check_cap(KVM_CAP_X86_WRITE_TRACK_PRERELEASE), 0);
	ASSERT_EQ(vm_check_cap(self->vm, KVM_CAP_X86_WRITE_TRACK_PRERELEASE), 0);
	ASSERT_EQ(__vm_ioctl(self->vm, KVM_ENABLE_CAP, &cap), -1);
	ASSERT_EQ(errno, EINVAL);

	/* Nothing was enabled by it. */
	ASSERT_EQ(__enable_wtrack(self->vm, 0, KVM_WTRACK_ENABLE_EXIT, 0), 0);
	vcpu_run_to_ucall(self->vcpu, UCALL_DONE);
}

TEST_F(wtrack, enable_then_guest_runs)
{
	ASSERT_EQ(__enable_wtrack(self->vm, 0, KVM_WTRACK_ENABLE_EXIT, 0), 0);
	vcpu_run_to_ucall(self->vcpu, UCALL_DONE);
	assert_guest_wrote(self->vm);
}

TEST_F(wtrack, enable_twice_fails_eexist)
{
	ASSERT_EQ(__enable_wtrack(self->vm, 0, KVM_WTRACK_ENABLE_EXIT, 0), 0);
	ASSERT_EQ(__enable_wtrack(self->vm, 0, KVM_WTRACK_ENABLE_EXIT, 0), -1);
	ASSERT_EQ(errno, EEXIST);
	vcpu_run_to_ucall(self->vcpu, UCALL_DONE);
}

TEST_F(wtrack, bad_arguments_fail_einval_and_change_nothing)
{
	const struct {
		uint32_t flags;
		uint64_t args0, args1;
	} bad[] = {
		{ .flags = 1, .args0 = KVM_WTRACK_ENABLE_EXIT },
		{ .args0 = 0 },
		{ .args0 = ~KVM_WTRACK_ENABLE_VALID_MASK },
		{ .args0 = KVM_WTRACK_ENABLE_EXIT | (1ULL << 63) },
		{ .args0 = KVM_WTRACK_ENABLE_EXIT, .args1 = 1 },
	};
	int i;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		ASSERT_EQ(__enable_wtrack(self->vm, bad[i].flags, bad[i].args0,
					  bad[i].args1), -1);
		ASSERT_EQ(errno, EINVAL);
	}

	/* Nothing was half-enabled: a valid enable still succeeds once. */
	ASSERT_EQ(__enable_wtrack(self->vm, 0, KVM_WTRACK_ENABLE_EXIT, 0), 0);
	vcpu_run_to_ucall(self->vcpu, UCALL_DONE);
	assert_guest_wrote(self->vm);
}

TEST_HARNESS_MAIN
