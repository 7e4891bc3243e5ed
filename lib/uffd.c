// SPDX-License-Identifier: MIT
/*
 * userfaultfd write-protect, the snapshot engine's comparison backend:
 * the mechanism of QEMU's background snapshot.  It protects the VMM's
 * mapping of guest memory, so a guest write reaches it when KVM's
 * get_user_pages() for the write faults, and the vCPU thread sleeps in
 * the page fault until the page is write-unprotected.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/userfaultfd.h>
#include "internal.h"
#include "snapstate.h"

/* Linux 6.4; the headers of older distributions lack it. */
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED	(1 << 13)
#endif

static int uffd_ioctl(int fd, unsigned long cmd, void *arg)
{
	int r;

	do {
		r = ioctl(fd, cmd, arg);
	} while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : 0;
}

/*
 * Not UFFD_USER_MODE_ONLY: KVM's faults on the memory are the point.
 * O_NONBLOCK: poll() on a blocking userfaultfd reports POLLERR.
 * WP_UNPOPULATED: pages never touched are protected too (their first
 * write would otherwise fill them behind the copier's back).
 */
int wts_uffd_open(void)
{
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_WP_UNPOPULATED,
	};
	int fd = syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	int r;

	if (fd < 0)
		return -errno;
	r = uffd_ioctl(fd, UFFDIO_API, &api);
	if (r) {
		close(fd);
		return r == -EINVAL ? -EOPNOTSUPP : r;
	}
	return fd;
}

int wts_uffd_register(int fd, void *hva, uint64_t len)
{
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)hva, .len = len },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};

	return uffd_ioctl(fd, UFFDIO_REGISTER, &reg);
}

int wts_uffd_unregister(int fd, void *hva, uint64_t len)
{
	struct uffdio_range range = { .start = (uintptr_t)hva, .len = len };

	return uffd_ioctl(fd, UFFDIO_UNREGISTER, &range);
}

/* Write-protect, or unprotect and wake the threads waiting on it. */
int wts_uffd_wp(int fd, void *hva, uint64_t len, bool wp)
{
	struct uffdio_writeprotect w = {
		.range = { .start = (uintptr_t)hva, .len = len },
		.mode = wp ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};

	return uffd_ioctl(fd, UFFDIO_WRITEPROTECT, &w);
}

/* Read write faults: their page addresses into @hvas, up to @max. */
int wts_uffd_read(int fd, uint64_t *hvas, int max)
{
	struct uffd_msg msg[64];
	ssize_t n;
	int nr = 0;

	if (max > (int)ARRAY_SIZE(msg))
		max = ARRAY_SIZE(msg);
	n = read(fd, msg, max * sizeof(msg[0]));
	if (n < 0)
		return errno == EAGAIN ? 0 : -errno;
	for (ssize_t i = 0; i < n / (ssize_t)sizeof(msg[0]); i++) {
		if (msg[i].event != UFFD_EVENT_PAGEFAULT ||
		    !(msg[i].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP))
			return -EPROTO;
		hvas[nr++] = msg[i].arg.pagefault.address & ~(WT_PAGE_SIZE - 1);
	}
	return nr;
}
