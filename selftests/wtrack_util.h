/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the kvm-wtrack selftests.  As in kvm_util.h, __foo()
 * returns the raw ioctl result for negative tests and foo() asserts.
 */
#ifndef SELFTEST_KVM_WTRACK_UTIL_H
#define SELFTEST_KVM_WTRACK_UTIL_H

#include <errno.h>
#include <linux/kvm_wtrack.h>

#include "kvm_util.h"
#include "ucall_common.h"

#define WTRACK_EXIT_FLAGS \
	(KVM_MEMORY_EXIT_FLAG_WRITE_TRACK | KVM_MEMORY_EXIT_FLAG_WTRACK_WRITE)

static inline void vm_enable_wtrack(struct kvm_vm *vm, uint64_t flags)
{
	vm_enable_cap(vm, KVM_CAP_X86_WRITE_TRACK, flags);
}

static inline int __vm_wtrack(struct kvm_vm *vm, unsigned long cmd,
			      uint64_t gpa, uint64_t size)
{
	struct kvm_wtrack_range range = { .gpa = gpa, .size = size };

	return ioctl(vm->fd, cmd, &range);
}

static inline void vm_wtrack_protect(struct kvm_vm *vm, uint64_t gpa,
				     uint64_t size)
{
	int r = __vm_wtrack(vm, KVM_WTRACK_PROTECT, gpa, size);

	TEST_ASSERT(!r, __KVM_IOCTL_ERROR("KVM_WTRACK_PROTECT", r));
}

static inline void vm_wtrack_unprotect(struct kvm_vm *vm, uint64_t gpa,
				       uint64_t size)
{
	int r = __vm_wtrack(vm, KVM_WTRACK_UNPROTECT, gpa, size);

	TEST_ASSERT(!r, __KVM_IOCTL_ERROR("KVM_WTRACK_UNPROTECT", r));
}

/* The stat @name of a binary stats fd. */
static inline uint64_t wtrack_fd_stat(int fd, const char *name)
{
	struct kvm_stats_header header;
	struct kvm_stats_desc *descs, *desc;
	uint64_t data = 0;
	bool found = false;

	TEST_ASSERT(fd >= 0, "KVM_GET_STATS_FD: %d", errno);
	read_stats_header(fd, &header);
	descs = read_stats_descriptors(fd, &header);
	for (uint32_t i = 0; i < header.num_desc && !found; i++) {
		desc = get_stats_descriptor(descs, i, &header);
		if (!strcmp(desc->name, name)) {
			read_stat_data(fd, &header, desc, &data, 1);
			found = true;
		}
	}
	free(descs);
	TEST_ASSERT(found, "no stat %s", name);
	return data;
}

/* One of the vCPU's binary stats (6.12's library reads only the VM's). */
static inline uint64_t wtrack_vcpu_stat(struct kvm_vcpu *vcpu, const char *name)
{
	int fd = vcpu_get_stats_fd(vcpu);
	uint64_t data = wtrack_fd_stat(fd, name);

	close(fd);
	return data;
}

/* Run until the guest makes the ucall @want (UCALL_SYNC, UCALL_DONE). */
static inline void vcpu_run_to_ucall(struct kvm_vcpu *vcpu, uint64_t want)
{
	struct ucall uc;
	int r = _vcpu_run(vcpu);

	TEST_ASSERT(!r, "KVM_RUN failed: %d errno %d (exit %s)", r, errno,
		    exit_reason_str(vcpu->run->exit_reason));
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
	if (get_ucall(vcpu, &uc) == UCALL_ABORT)
		REPORT_GUEST_ASSERT(uc);
	TEST_ASSERT(uc.cmd == want, "ucall %lu, want %lu", uc.cmd, want);
}

/* Run and expect the write-tracking exit for a write of @size at @gpa. */
static inline void __vcpu_run_to_wtrack_exit(struct kvm_vcpu *vcpu, uint64_t gpa,
					     uint64_t size)
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
	TEST_ASSERT(!(run->memory_fault.flags & KVM_MEMORY_EXIT_FLAG_WTRACK_LANDED),
		    "a stopped write reported as landed");
	TEST_ASSERT_EQ(run->memory_fault.gpa, gpa);
	TEST_ASSERT_EQ(run->memory_fault.size, size);
}

/*
 * A hardware write fault does not tell the access size: the exit reports
 * the rest of the page.
 */
static inline void vcpu_run_to_wtrack_exit(struct kvm_vcpu *vcpu, uint64_t gpa)
{
	__vcpu_run_to_wtrack_exit(vcpu, gpa, PAGE_SIZE - (gpa & (PAGE_SIZE - 1)));
}

/*
 * Run until the guest makes the ucall @want, accepting only reports of
 * writes KVM made itself to @page (flagged as landed) on the way.
 * Returns how many there were.
 */
static inline int vcpu_run_count_landed(struct kvm_vcpu *vcpu, uint64_t page,
					uint64_t want)
{
	const uint64_t flags = WTRACK_EXIT_FLAGS | KVM_MEMORY_EXIT_FLAG_WTRACK_LANDED;
	struct kvm_run *run = vcpu->run;
	struct ucall uc;
	int n;

	for (n = 0; n < 1000; n++) {
		int r = _vcpu_run(vcpu);

		if (r == -1 && errno == EFAULT &&
		    run->exit_reason == KVM_EXIT_MEMORY_FAULT) {
			TEST_ASSERT(run->memory_fault.flags == flags,
				    "flags 0x%llx, want 0x%lx", run->memory_fault.flags, flags);
			TEST_ASSERT_EQ(run->memory_fault.gpa, page);
			TEST_ASSERT_EQ(run->memory_fault.size, PAGE_SIZE);
			continue;
		}
		TEST_ASSERT(!r, "KVM_RUN failed: %d errno %d (exit %s)", r, errno,
			    exit_reason_str(run->exit_reason));
		TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
		if (get_ucall(vcpu, &uc) == UCALL_ABORT)
			REPORT_GUEST_ASSERT(uc);
		TEST_ASSERT(uc.cmd == want, "ucall %lu, want %lu", uc.cmd, want);
		return n;
	}
	TEST_FAIL("%d reports of writes to 0x%lx and no ucall", n, page);
	return n;
}

#endif /* SELFTEST_KVM_WTRACK_UTIL_H */
