// SPDX-License-Identifier: MIT
/*
 * Setting up and tearing down tracking, the VM ioctls, and the exit mode's
 * decoding of KVM_RUN's report.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <linux/kvm.h>
#include "internal.h"

/*
 * kvm_run.memory_fault and KVM_EXIT_MEMORY_FAULT came with Linux 6.8, and
 * kvm_run.wtrack_landed comes with kvm-wtrack's <linux/kvm.h> only; older
 * headers (Debian bookworm's is 6.1) lack them, so each report is read
 * from the start of the exit union, where every version puts it.
 */
#ifndef KVM_EXIT_MEMORY_FAULT
#define KVM_EXIT_MEMORY_FAULT	39
#else
_Static_assert(offsetof(struct kvm_run, memory_fault) == offsetof(struct kvm_run, hw),
	       "memory_fault starts the exit union");
#endif

struct wt_memory_fault {
	__u64 flags;
	__u64 gpa;
	__u64 size;
};

_Static_assert(offsetof(struct kvm_run, exit_reason) == 8 &&
	       offsetof(struct kvm_run, hw) == 32, "the kvm_run ABI");
_Static_assert(sizeof(struct kvm_wtrack_landed_exit) <= 256,
	       "kvm_run.wtrack_landed fits the exit union");

/* The exit union, whatever the header calls its members. */
static const void *exit_union(const struct kvm_run *run)
{
	return (const char *)run + offsetof(struct kvm_run, hw);
}

static int range_ioctl(struct wtrack *wt, unsigned long req, uint64_t gpa, uint64_t size)
{
	struct kvm_wtrack_range r = { .gpa = gpa, .size = size };

	return ioctl(wt->vm_fd, req, &r) < 0 ? -errno : 0;
}

WT_API int wtrack_protect(struct wtrack *wt, uint64_t gpa, uint64_t size)
{
	return range_ioctl(wt, KVM_WTRACK_PROTECT, gpa, size);
}

WT_API int wtrack_unprotect(struct wtrack *wt, uint64_t gpa, uint64_t size)
{
	return range_ioctl(wt, KVM_WTRACK_UNPROTECT, gpa, size);
}

/*
 * In ring mode, a VM whose tracking is already on may get a new ring once
 * the old one is gone: KVM_WTRACK_RING_FD tells whether it can.
 */
static int enable(int vm_fd, const struct wtrack_params *p, bool *existed)
{
	bool ring = p->mode == WTRACK_MODE_RING;
	__u64 flag = ring ? KVM_WTRACK_ENABLE_RING : KVM_WTRACK_ENABLE_EXIT;
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_X86_WRITE_TRACK,
		.args = { flag, ring ? p->ring_entries : 0 },
	};
	int mask = ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_X86_WRITE_TRACK);

	if (mask < 0)
		return -errno;
	if (!(mask & flag))
		return -EOPNOTSUPP;
	*existed = ioctl(vm_fd, KVM_ENABLE_CAP, &cap) < 0;
	if (*existed && !(ring && errno == EEXIST))
		return -errno;
	return 0;
}

/*
 * Map the header to learn the layout, then all of it.  Events lie
 * header.event_size bytes apart: a later kernel may make them longer, and
 * the library reads the part it knows.
 */
static int map_ring(int fd, void **mapp, size_t *lenp)
{
	const struct kvm_wtrack_ring_header *hdr;
	long pg = sysconf(_SC_PAGESIZE);
	size_t len;
	void *map;

	map = mmap(NULL, pg, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return -errno;
	hdr = map;
	if (hdr->event_size < sizeof(struct kvm_wtrack_event)) {
		munmap(map, pg);
		return -EIO;	/* not the layout this header describes */
	}
	len = hdr->events_offset + (size_t)hdr->size * hdr->event_size;
	munmap(map, pg);
	map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return -errno;
	*mapp = map;
	*lenp = len;
	return 0;
}

static int open_ring(int vm_fd, const struct wtrack_params *p, struct wtrack **wtp)
{
	void *map = NULL, *priv = NULL;
	size_t len = 0;
	int fd, ret;

	fd = ioctl(vm_fd, KVM_WTRACK_RING_FD, 0);
	if (fd < 0)
		return -errno;	/* EINVAL: the VM is in exit mode */
	ret = map_ring(fd, &map, &len);
	if (!ret)
		ret = wt_uring_create(fd, p->flags, &priv);
	if (!ret) {
		ret = wt_ring_open(p, map, &wt_uring_transport, priv, wtp);
		if (ret)
			wt_uring_destroy(priv);
	}
	if (ret) {
		if (map)
			munmap(map, len);
		close(fd);
		return ret;
	}
	(*wtp)->vm_fd = vm_fd;
	(*wtp)->ring_fd = fd;
	(*wtp)->map = map;
	(*wtp)->map_len = len;
	return 0;
}

WT_API int wtrack_open(int vm_fd, const struct wtrack_params *params, struct wtrack **wtp)
{
	struct wtrack_params p;
	bool existed = false;
	struct wtrack *wt;
	int ret;

	ret = wt_check_params(params, &p);
	if (!ret)
		ret = enable(vm_fd, &p, &existed);
	if (ret)
		return ret;
	if (p.mode == WTRACK_MODE_RING) {
		ret = open_ring(vm_fd, &p, wtp);
		return existed && ret == -EINVAL ? -EEXIST : ret;
	}
	wt = calloc(1, sizeof(*wt));
	if (!wt)
		return -ENOMEM;
	wt->mode = WTRACK_MODE_EXIT;
	wt->vm_fd = vm_fd;
	wt->ring_fd = -1;
	*wtp = wt;
	return 0;
}

WT_API void wtrack_close(struct wtrack *wt)
{
	void *map;
	size_t len;
	int fd;

	if (!wt)
		return;
	if (wt->mode != WTRACK_MODE_RING) {
		free(wt);
		return;
	}
	map = wt->map;
	len = wt->map_len;
	fd = wt->ring_fd;
	wt_ring_close(wt);
	if (map)
		munmap(map, len);
	if (fd >= 0)
		close(fd);
}

WT_API int wtrack_ring_fd(struct wtrack *wt)
{
	return wt->mode == WTRACK_MODE_RING ? wt->ring_fd : -EOPNOTSUPP;
}

/*
 * A stopped write is a memory fault with our flag; a landed write has an
 * exit reason of its own.  Both become the event the ring would carry.
 */
WT_API int wtrack_exit_event(const struct kvm_run *run, unsigned int vcpu_id,
			     struct kvm_wtrack_event *ev)
{
	struct kvm_wtrack_landed_exit landed;
	struct wt_memory_fault mf;

	if (!run || !ev)
		return -EINVAL;
	switch (run->exit_reason) {
	case KVM_EXIT_MEMORY_FAULT:
		memcpy(&mf, exit_union(run), sizeof(mf));
		if (!(mf.flags & KVM_MEMORY_EXIT_FLAG_WRITE_TRACK))
			return 0;
		*ev = (struct kvm_wtrack_event){
			.gpa = mf.gpa,
			.size = mf.size,
			.vcpu_id = vcpu_id,
		};
		return 1;
	case KVM_EXIT_WTRACK_LANDED:
		memcpy(&landed, exit_union(run), sizeof(landed));
		*ev = (struct kvm_wtrack_event){
			.gpa = landed.gpa,
			.size = landed.size,
			.vcpu_id = vcpu_id,
			.flags = landed.flags,
		};
		return 1;
	default:
		return 0;
	}
}
