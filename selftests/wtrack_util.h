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

/* memory_fault.flags of a stopped write: our bit and nothing else. */
#define WTRACK_EXIT_FLAGS	KVM_MEMORY_EXIT_FLAG_WRITE_TRACK

static inline void vm_enable_wtrack(struct kvm_vm *vm, uint64_t flags)
{
	vm_enable_cap(vm, KVM_CAP_X86_WRITE_TRACK, flags);
}

/* Enable with @flags and, for ring mode, @entries: the raw result. */
static inline int __vm_enable_wtrack(struct kvm_vm *vm, uint64_t flags,
				     uint64_t entries)
{
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_X86_WRITE_TRACK,
		.args = { flags, entries },
	};

	return __vm_ioctl(vm, KVM_ENABLE_CAP, &cap);
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

/* The bytes a stop at @gpa reports: always the rest of its page. */
static inline uint64_t wtrack_stop_size(uint64_t gpa)
{
	return PAGE_SIZE - (gpa & (PAGE_SIZE - 1));
}

/*
 * Run and expect a write-tracking stop; returns the gpa of its first
 * protected byte.  Every stop, by the MMU or by KVM's emulator, reports
 * the rest of the page from there, whatever the access size.
 */
static inline uint64_t vcpu_run_to_wtrack_stop(struct kvm_vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	int r = _vcpu_run(vcpu);

	TEST_ASSERT(r == -1 && errno == EFAULT,
		    "KVM_RUN: want -1/EFAULT, got %d errno %d (exit %s)", r, errno,
		    exit_reason_str(run->exit_reason));
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_MEMORY_FAULT);
	TEST_ASSERT(run->memory_fault.flags == WTRACK_EXIT_FLAGS,
		    "memory_fault.flags 0x%llx, want 0x%llx (write tracking only)",
		    run->memory_fault.flags, WTRACK_EXIT_FLAGS);
	TEST_ASSERT_EQ(run->memory_fault.size, wtrack_stop_size(run->memory_fault.gpa));
	return run->memory_fault.gpa;
}

/* Run and expect the write-tracking stop whose first protected byte is @gpa. */
static inline void vcpu_run_to_wtrack_exit(struct kvm_vcpu *vcpu, uint64_t gpa)
{
	uint64_t stop = vcpu_run_to_wtrack_stop(vcpu);

	TEST_ASSERT_EQ(stop, gpa);
}

/*
 * The same, anywhere in @page: for instructions whose first byte written
 * is the CPU's choice.
 */
static inline void vcpu_run_to_wtrack_stop_in(struct kvm_vcpu *vcpu, uint64_t page)
{
	uint64_t stop = vcpu_run_to_wtrack_stop(vcpu);

	TEST_ASSERT_EQ(stop & ~(PAGE_SIZE - 1), page);
}

/* Assert that the last KVM_RUN returned a landed-write exit for @page. */
static inline void assert_wtrack_landed(struct kvm_vcpu *vcpu, uint64_t page)
{
	struct kvm_wtrack_landed_exit *l = &vcpu->run->wtrack_landed;

	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_WTRACK_LANDED);
	TEST_ASSERT(l->flags == KVM_WTRACK_EVENT_LANDED,
		    "wtrack_landed.flags 0x%llx, want LANDED", l->flags);
	TEST_ASSERT_EQ(l->gpa, page);
	TEST_ASSERT_EQ(l->size, PAGE_SIZE);
	for (int i = 0; i < ARRAY_SIZE(l->reserved); i++)
		TEST_ASSERT_EQ(l->reserved[i], 0);
}

/*
 * Run until the guest makes the ucall @want, accepting only reports of
 * writes KVM made itself to @page on the way: KVM_RUN returns 0 with
 * KVM_EXIT_WTRACK_LANDED.  Returns how many there were.
 */
static inline int vcpu_run_count_landed(struct kvm_vcpu *vcpu, uint64_t page,
					uint64_t want)
{
	struct kvm_run *run = vcpu->run;
	struct ucall uc;
	int n;

	for (n = 0; n < 1000; n++) {
		int r = _vcpu_run(vcpu);

		TEST_ASSERT(!r, "KVM_RUN failed: %d errno %d (exit %s)", r, errno,
			    exit_reason_str(run->exit_reason));
		if (run->exit_reason == KVM_EXIT_WTRACK_LANDED) {
			assert_wtrack_landed(vcpu, page);
			continue;
		}
		TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
		if (get_ucall(vcpu, &uc) == UCALL_ABORT)
			REPORT_GUEST_ASSERT(uc);
		TEST_ASSERT(uc.cmd == want, "ucall %lu, want %lu", uc.cmd, want);
		return n;
	}
	TEST_FAIL("%d reports of writes to 0x%lx and no ucall", n, page);
	return n;
}

/*
 * Answer the KVM_EXIT_IO of a REP INSB from @port with bytes 0xd0 + @n,
 * 0xd1 + @n...: with @n the bytes given so far, byte i of the destination
 * is 0xd0 + i however the reads are split.  Returns how many were given.
 */
static inline int wtrack_answer_insb(struct kvm_vcpu *vcpu, uint16_t port, int n)
{
	struct kvm_run *run = vcpu->run;

	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
	TEST_ASSERT_EQ(run->io.port, port);
	TEST_ASSERT_EQ(run->io.direction, KVM_EXIT_IO_IN);
	TEST_ASSERT_EQ(run->io.size, 1);
	for (uint32_t i = 0; i < run->io.count; i++)
		((uint8_t *)run + run->io.data_offset)[i] = 0xd0 + n + i;
	return run->io.count;
}

#endif /* SELFTEST_KVM_WTRACK_UTIL_H */
