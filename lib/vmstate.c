// SPDX-License-Identifier: MIT
/*
 * A VM's vCPU and VM state into snapshot records, and back into a fresh
 * VM.  The order of the KVM_SET_* calls is the one KVM's own save/restore
 * selftests and QEMU use: segment and control registers first (EFER
 * decides what the MSRs and the nested state may hold), the general
 * registers late, the nested state last, the clock after every vCPU.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/kvm.h>
#include "internal.h"
#include "wtsnap.h"
#include "snapstate.h"

#define MAX_CPUID_ENTRIES	4096
#define MAX_MSRS		4096

static int kvm_ioctl(int fd, unsigned long cmd, void *arg)
{
	int r;

	do {
		r = ioctl(fd, cmd, arg);
	} while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : r;
}

static int check_extension(int fd, long cap)
{
	int r = ioctl(fd, KVM_CHECK_EXTENSION, cap);

	return r < 0 ? 0 : r;
}

/* The MSRs KVM saves and restores for a vCPU: /dev/kvm's list. */
static int msr_index_list(struct kvm_msr_list **out)
{
	struct kvm_msr_list probe = { .nmsrs = 0 }, *list;
	int kvm_fd, r;

	kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm_fd < 0)
		return -errno;
	r = kvm_ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe);
	if (r != -E2BIG || probe.nmsrs > MAX_MSRS) {
		close(kvm_fd);
		return r < 0 && r != -E2BIG ? r : -EPROTO;
	}
	list = calloc(1, sizeof(*list) + probe.nmsrs * sizeof(list->indices[0]));
	if (!list) {
		close(kvm_fd);
		return -ENOMEM;
	}
	list->nmsrs = probe.nmsrs;
	r = kvm_ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, list);
	close(kvm_fd);
	if (r < 0) {
		free(list);
		return r;
	}
	*out = list;
	return 0;
}

int wts_caps_init(struct wts_caps *caps, int vm_fd)
{
	int r;

	memset(caps, 0, sizeof(*caps));
	caps->xsave_size = check_extension(vm_fd, KVM_CAP_XSAVE2);
	caps->xcrs = check_extension(vm_fd, KVM_CAP_XCRS);
	caps->nested_size = check_extension(vm_fd, KVM_CAP_NESTED_STATE);
	r = msr_index_list(&caps->msrs);
	return r;
}

void wts_caps_free(struct wts_caps *caps)
{
	free(caps->msrs);
	caps->msrs = NULL;
}

/* ---- Capture ---- */

static int save_fixed(struct wtsnap_file *f, unsigned int idx, int fd,
		      unsigned long cmd, uint32_t type, void *buf, size_t size)
{
	int r = kvm_ioctl(fd, cmd, buf);

	return r < 0 ? r : wtsnap_file_add_state(f, type, idx, buf, size);
}

static int save_cpuid(struct wtsnap_file *f, unsigned int idx, int fd)
{
	size_t size = sizeof(struct kvm_cpuid2) +
		      MAX_CPUID_ENTRIES * sizeof(struct kvm_cpuid_entry2);
	struct kvm_cpuid2 *cpuid = calloc(1, size);
	int r;

	if (!cpuid)
		return -ENOMEM;
	cpuid->nent = MAX_CPUID_ENTRIES;
	r = kvm_ioctl(fd, KVM_GET_CPUID2, cpuid);
	if (!r)
		r = wtsnap_file_add_state(f, WTSNAP_STATE_CPUID, idx, cpuid,
					  sizeof(*cpuid) + cpuid->nent *
					  sizeof(cpuid->entries[0]));
	free(cpuid);
	return r;
}

/*
 * KVM_GET_MSRS stops at the first MSR it cannot read: keep what it read,
 * skip that one and go on, so one MSR this vCPU lacks does not cost the
 * others.  @io is the request, @msrs collects the answers.
 */
static int read_msrs(int fd, const struct kvm_msr_list *list,
		     struct kvm_msrs *io, struct kvm_msrs *msrs)
{
	uint32_t i = 0;
	int r;

	msrs->nmsrs = 0;
	while (i < list->nmsrs) {
		io->nmsrs = list->nmsrs - i;
		for (uint32_t j = 0; j < io->nmsrs; j++)
			io->entries[j] = (struct kvm_msr_entry) {
				.index = list->indices[i + j] };
		r = kvm_ioctl(fd, KVM_GET_MSRS, io);
		if (r < 0)
			return r;
		memcpy(&msrs->entries[msrs->nmsrs], io->entries,
		       r * sizeof(io->entries[0]));
		msrs->nmsrs += r;
		i += r + 1;
	}
	return 0;
}

static int save_msrs(struct wtsnap_file *f, unsigned int idx, int fd,
		     const struct kvm_msr_list *list, struct kvm_msrs **out)
{
	size_t size = sizeof(struct kvm_msrs) +
		      list->nmsrs * sizeof(struct kvm_msr_entry);
	struct kvm_msrs *io = calloc(1, size), *msrs = calloc(1, size);
	int r = io && msrs ? read_msrs(fd, list, io, msrs) : -ENOMEM;

	if (!r)
		r = wtsnap_file_add_state(f, WTSNAP_STATE_MSRS, idx, msrs,
					  sizeof(*msrs) + msrs->nmsrs *
					  sizeof(msrs->entries[0]));
	free(io);
	if (!r && out)
		*out = msrs;
	else
		free(msrs);
	return r;
}

static int save_xsave(struct wtsnap_file *f, unsigned int idx, int fd,
		      const struct wts_caps *caps)
{
	size_t size = caps->xsave_size > (int)sizeof(struct kvm_xsave) ?
		      (size_t)caps->xsave_size : sizeof(struct kvm_xsave);
	void *buf = calloc(1, size);
	int r;

	if (!buf)
		return -ENOMEM;
	r = save_fixed(f, idx, fd, caps->xsave_size ? KVM_GET_XSAVE2 : KVM_GET_XSAVE,
		       WTSNAP_STATE_XSAVE, buf, size);
	free(buf);
	return r;
}

static int save_nested(struct wtsnap_file *f, unsigned int idx, int fd,
		       const struct wts_caps *caps, struct kvm_nested_state **out)
{
	struct kvm_nested_state *ns = calloc(1, caps->nested_size);
	int r;

	if (!ns)
		return -ENOMEM;
	ns->size = caps->nested_size;
	r = kvm_ioctl(fd, KVM_GET_NESTED_STATE, ns);
	if (!r)
		r = wtsnap_file_add_state(f, WTSNAP_STATE_NESTED, idx, ns, ns->size);
	if (!r && out)
		*out = ns;
	else
		free(ns);
	return r;
}

/* The local APIC only exists in the kernel with an in-kernel irqchip. */
static int save_lapic(struct wtsnap_file *f, unsigned int idx, int fd)
{
	struct kvm_lapic_state lapic;
	int r = kvm_ioctl(fd, KVM_GET_LAPIC, &lapic);

	if (r == -EINVAL || r == -ENXIO)
		return 0;
	return r < 0 ? r : wtsnap_file_add_state(f, WTSNAP_STATE_LAPIC, idx,
						 &lapic, sizeof(lapic));
}

int wts_save_vcpu(struct wtsnap_file *f, unsigned int idx, int fd,
		  const struct wts_caps *caps, struct wts_vcpu_state *st)
{
	struct kvm_vcpu_events events;
	struct kvm_debugregs dregs;
	struct kvm_mp_state mp;
	struct kvm_xcrs xcrs;
	int r;

	memset(st, 0, sizeof(*st));
	r = save_cpuid(f, idx, fd);
	r = r ?: save_fixed(f, idx, fd, KVM_GET_VCPU_EVENTS,
			    WTSNAP_STATE_VCPU_EVENTS, &events, sizeof(events));
	r = r ?: save_fixed(f, idx, fd, KVM_GET_MP_STATE, WTSNAP_STATE_MP_STATE,
			    &mp, sizeof(mp));
	r = r ?: save_fixed(f, idx, fd, KVM_GET_REGS, WTSNAP_STATE_REGS,
			    &st->regs, sizeof(st->regs));
	r = r ?: save_xsave(f, idx, fd, caps);
	if (!r && caps->xcrs)
		r = save_fixed(f, idx, fd, KVM_GET_XCRS, WTSNAP_STATE_XCRS,
			       &xcrs, sizeof(xcrs));
	r = r ?: save_fixed(f, idx, fd, KVM_GET_SREGS, WTSNAP_STATE_SREGS,
			    &st->sregs, sizeof(st->sregs));
	if (!r && caps->nested_size)
		r = save_nested(f, idx, fd, caps, &st->nested);
	r = r ?: save_msrs(f, idx, fd, caps->msrs, &st->msrs);
	r = r ?: save_lapic(f, idx, fd);
	r = r ?: save_fixed(f, idx, fd, KVM_GET_DEBUGREGS, WTSNAP_STATE_DEBUGREGS,
			    &dregs, sizeof(dregs));
	if (r)
		wts_vcpu_state_free(st);
	return r;
}

void wts_vcpu_state_free(struct wts_vcpu_state *st)
{
	free(st->msrs);
	free(st->nested);
	st->msrs = NULL;
	st->nested = NULL;
}

/* A VM without an in-kernel irqchip or PIT has no such state. */
static int save_optional(struct wtsnap_file *f, int vm_fd, unsigned long cmd,
			 uint32_t type, void *buf, size_t size)
{
	int r = kvm_ioctl(vm_fd, cmd, buf);

	if (r == -ENXIO || r == -EINVAL)
		return 0;
	return r < 0 ? r : wtsnap_file_add_state(f, type, WTSNAP_VCPU_VM, buf, size);
}

int wts_save_vm(struct wtsnap_file *f, int vm_fd)
{
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock = { 0 };
	int r = 0;

	for (uint32_t chip = 0; chip < 3 && !r; chip++) {
		struct kvm_irqchip irqchip = { .chip_id = chip };

		r = save_optional(f, vm_fd, KVM_GET_IRQCHIP, WTSNAP_STATE_IRQCHIP,
				  &irqchip, sizeof(irqchip));
	}
	r = r ?: save_optional(f, vm_fd, KVM_GET_PIT2, WTSNAP_STATE_PIT2,
			       &pit, sizeof(pit));
	r = r ?: kvm_ioctl(vm_fd, KVM_GET_CLOCK, &clock);
	return r ?: wtsnap_file_add_state(f, WTSNAP_STATE_CLOCK, WTSNAP_VCPU_VM,
					  &clock, sizeof(clock));
}

/* ---- Restore ---- */

/* What KVM_SET_* each record type goes to, in the order they go. */
static const struct {
	uint32_t type;
	unsigned long cmd;
} vcpu_order[] = {
	{ WTSNAP_STATE_CPUID,		KVM_SET_CPUID2 },
	{ WTSNAP_STATE_SREGS,		KVM_SET_SREGS },
	{ WTSNAP_STATE_SREGS2,		KVM_SET_SREGS2 },
	{ WTSNAP_STATE_MSRS,		KVM_SET_MSRS },
	{ WTSNAP_STATE_XCRS,		KVM_SET_XCRS },
	{ WTSNAP_STATE_XSAVE,		KVM_SET_XSAVE },
	{ WTSNAP_STATE_FPU,		KVM_SET_FPU },
	{ WTSNAP_STATE_LAPIC,		KVM_SET_LAPIC },
	{ WTSNAP_STATE_VCPU_EVENTS,	KVM_SET_VCPU_EVENTS },
	{ WTSNAP_STATE_MP_STATE,	KVM_SET_MP_STATE },
	{ WTSNAP_STATE_DEBUGREGS,	KVM_SET_DEBUGREGS },
	{ WTSNAP_STATE_REGS,		KVM_SET_REGS },
	{ WTSNAP_STATE_NESTED,		KVM_SET_NESTED_STATE },
};

/* The ioctls take non-const pointers; KVM only reads the payload. */
static int set_record(int fd, unsigned long cmd, const struct wtsnap_record *rec)
{
	void *copy = malloc(rec->size);
	int r;

	if (!copy)
		return -ENOMEM;
	memcpy(copy, rec->data, rec->size);
	/*
	 * The clock goes on from the snapshot's instant: with
	 * KVM_CLOCK_REALTIME, KVM would add the time since the snapshot.
	 */
	if (cmd == KVM_SET_CLOCK)
		((struct kvm_clock_data *)copy)->flags = 0;
	r = kvm_ioctl(fd, cmd, copy);
	/* KVM_SET_MSRS returns how many it set. */
	if (cmd == KVM_SET_MSRS && r >= 0)
		r = (uint32_t)r == ((struct kvm_msrs *)copy)->nmsrs ? 0 : -EIO;
	free(copy);
	return r < 0 ? r : 0;
}

static int restore_type(const struct wtsnap_file *f, uint32_t vcpu, int fd,
			uint32_t type, unsigned long cmd)
{
	struct wtsnap_record rec;
	unsigned int pos = 0;
	int r;

	while ((r = wtsnap_file_next_state(f, &pos, type, vcpu, &rec)) > 0) {
		r = set_record(fd, cmd, &rec);
		if (r)
			return r;
	}
	return r;
}

static int restore_vcpu(const struct wtsnap_file *f, unsigned int idx, int fd)
{
	int r = 0;

	for (size_t i = 0; i < ARRAY_SIZE(vcpu_order) && !r; i++)
		r = restore_type(f, idx, fd, vcpu_order[i].type, vcpu_order[i].cmd);
	return r;
}

WT_API int wtsnap_restore_state(const struct wtsnap_file *f, int vm_fd,
				const int *vcpu_fds, unsigned int nr_vcpus)
{
	struct wtsnap_info info;
	int r = wtsnap_file_info(f, &info);

	if (r)
		return r;
	if (!vcpu_fds || nr_vcpus != info.nr_vcpus)
		return -EINVAL;
	r = restore_type(f, WTSNAP_VCPU_VM, vm_fd, WTSNAP_STATE_IRQCHIP,
			 KVM_SET_IRQCHIP);
	r = r ?: restore_type(f, WTSNAP_VCPU_VM, vm_fd, WTSNAP_STATE_PIT2,
			      KVM_SET_PIT2);
	for (unsigned int i = 0; i < nr_vcpus && !r; i++)
		r = restore_vcpu(f, i, vcpu_fds[i]);
	/* Last: setting the TSCs above must not move the clock. */
	return r ?: restore_type(f, WTSNAP_VCPU_VM, vm_fd, WTSNAP_STATE_CLOCK,
				 KVM_SET_CLOCK);
}
