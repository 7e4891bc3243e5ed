/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers for the kvm-wtrack selftests that drive a ring by hand: vCPUs
 * running in threads of their own (a ring-mode vCPU waits inside
 * KVM_RUN), the ring's fd, mapping and io_uring commands, and the
 * debug-only delay points of the kernel (kvm.wtrack_delay_*_us).
 */
#ifndef SELFTEST_KVM_WTRACK_RING_UTIL_H
#define SELFTEST_KVM_WTRACK_RING_UTIL_H

#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <sys/mman.h>
#include <liburing.h>

#include "wtrack_util.h"

/* Under software emulation a vCPU may take a while to get anywhere. */
#define WTRACK_TIMEOUT_MS	20000

static inline uint64_t wtrack_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000ULL + ts.tv_nsec / 1000000;
}

/* @cond is evaluated once per millisecond, and may have side effects. */
#define wtrack_wait_until(cond)						\
({									\
	uint64_t __end = wtrack_now_ms() + WTRACK_TIMEOUT_MS;		\
	bool __ok;							\
									\
	while (!(__ok = (cond)) && wtrack_now_ms() < __end)		\
		usleep(1000);						\
	TEST_ASSERT(__ok, "timed out waiting for " #cond);		\
})

/* One KVM_RUN in a thread of its own, so that the test can watch it wait. */
struct wtrack_vcpu_run {
	struct kvm_vcpu *vcpu;
	pthread_t thread;
	int r, err;
	volatile bool done;
};

static inline void *wtrack_vcpu_run_thread(void *arg)
{
	struct wtrack_vcpu_run *run = arg;

	/* Not _vcpu_run(), which retries KVM_RUN on EINTR. */
	run->r = __vcpu_run(run->vcpu);
	run->err = errno;
	run->done = true;
	return NULL;
}

/* @attr: the thread's attributes, or NULL. */
static inline void __wtrack_vcpu_run_start(struct wtrack_vcpu_run *run,
					   struct kvm_vcpu *vcpu,
					   const pthread_attr_t *attr)
{
	run->vcpu = vcpu;
	run->done = false;
	pthread_create(&run->thread, attr, wtrack_vcpu_run_thread, run);
}

static inline void wtrack_vcpu_run_start(struct wtrack_vcpu_run *run,
					 struct kvm_vcpu *vcpu)
{
	__wtrack_vcpu_run_start(run, vcpu, NULL);
}

/* The same, on @cpu from the thread's start. */
static inline void wtrack_vcpu_run_start_on(struct wtrack_vcpu_run *run,
					    struct kvm_vcpu *vcpu, int cpu)
{
	pthread_attr_t attr;
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_attr_init(&attr);
	pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
	__wtrack_vcpu_run_start(run, vcpu, &attr);
	pthread_attr_destroy(&attr);
}

/* Join a KVM_RUN that must have ended with the guest's ucall @want. */
static inline void wtrack_vcpu_run_join(struct wtrack_vcpu_run *run, uint64_t want)
{
	struct ucall uc;

	pthread_join(run->thread, NULL);
	TEST_ASSERT(!run->r, "KVM_RUN: %d errno %d (exit %s)", run->r, run->err,
		    exit_reason_str(run->vcpu->run->exit_reason));
	TEST_ASSERT_KVM_EXIT_REASON(run->vcpu, KVM_EXIT_IO);
	if (get_ucall(run->vcpu, &uc) == UCALL_ABORT)
		REPORT_GUEST_ASSERT(uc);
	TEST_ASSERT_EQ(uc.cmd, want);
}

/* A consumer of a VM's ring: its fd, its mapping and an io_uring. */
struct wtrack_test_ring {
	int fd;
	const volatile struct kvm_wtrack_ring_header *hdr;
	size_t map_size;
	struct io_uring uring;
	bool have_uring;
};

static inline int __vm_enable_wtrack_ring(struct kvm_vm *vm, uint64_t entries)
{
	return __vm_enable_wtrack(vm, KVM_WTRACK_ENABLE_RING, entries);
}

static inline int __vm_wtrack_ring_fd(struct kvm_vm *vm)
{
	return ioctl(vm->fd, KVM_WTRACK_RING_FD, 0UL);
}

/* Map the ring of @r->fd: its header first, which gives the size. */
static inline void wtrack_ring_map(struct wtrack_test_ring *r)
{
	const struct kvm_wtrack_ring_header *hdr;

	hdr = mmap(NULL, getpagesize(), PROT_READ, MAP_SHARED, r->fd, 0);
	TEST_ASSERT(hdr != MAP_FAILED, "mmap: %d", errno);
	TEST_ASSERT_EQ(hdr->event_size, sizeof(struct kvm_wtrack_event));
	r->map_size = hdr->events_offset + (size_t)hdr->size * hdr->event_size;
	munmap((void *)hdr, getpagesize());
	r->hdr = mmap(NULL, r->map_size, PROT_READ, MAP_SHARED, r->fd, 0);
	TEST_ASSERT(r->hdr != MAP_FAILED, "mmap: %d", errno);
}

/* Attach to @vm's ring, map it, and set up an io_uring for commands. */
static inline void wtrack_ring_attach(struct kvm_vm *vm, struct wtrack_test_ring *r)
{
	r->fd = __vm_wtrack_ring_fd(vm);
	TEST_ASSERT(r->fd >= 0, __KVM_IOCTL_ERROR("KVM_WTRACK_RING_FD", r->fd));
	wtrack_ring_map(r);
	TEST_ASSERT_EQ(io_uring_queue_init(8, &r->uring, IORING_SETUP_SQE128), 0);
	r->have_uring = true;
}

/* Drop every reference this process holds: the ring is released. */
static inline void wtrack_ring_detach(struct wtrack_test_ring *r)
{
	if (r->have_uring)
		io_uring_queue_exit(&r->uring);
	if (r->hdr)
		munmap((void *)r->hdr, r->map_size);
	if (r->fd >= 0)
		close(r->fd);
	r->have_uring = false;
	r->hdr = NULL;
	r->fd = -1;
}

static inline uint32_t wtrack_ring_tail(const struct wtrack_test_ring *r)
{
	return __atomic_load_n(&r->hdr->tail, __ATOMIC_ACQUIRE);
}

static inline struct kvm_wtrack_event wtrack_ring_event(const struct wtrack_test_ring *r,
							uint32_t i)
{
	const void *ev = (const void *)r->hdr + r->hdr->events_offset +
			 (i & (r->hdr->size - 1)) * r->hdr->event_size;

	return *(const struct kvm_wtrack_event *)ev;
}

static inline void wtrack_ring_submit(struct wtrack_test_ring *r, unsigned int op,
				      const struct kvm_wtrack_ring_cmd *cmd)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r->uring);

	TEST_ASSERT(sqe, "no free SQE");
	io_uring_prep_rw(IORING_OP_URING_CMD, sqe, r->fd, NULL, 0, 0);
	sqe->cmd_op = op;
	memcpy(sqe->cmd, cmd, sizeof(*cmd));
	io_uring_sqe_set_data64(sqe, op);
	TEST_ASSERT_EQ(io_uring_submit(&r->uring), 1);
}

/* The next completion's result. */
static inline int wtrack_ring_reap(struct wtrack_test_ring *r)
{
	struct io_uring_cqe *cqe;
	int res;

	TEST_ASSERT_EQ(io_uring_wait_cqe(&r->uring, &cqe), 0);
	res = cqe->res;
	io_uring_cqe_seen(&r->uring, cqe);
	return res;
}

/*
 * The next completion's result, and its user_data if @user_data is not
 * NULL; -ETIME if none comes within @ms (the command is still in flight).
 */
static inline int wtrack_ring_reap_timeout(struct wtrack_test_ring *r, int ms,
					   uint64_t *user_data)
{
	struct __kernel_timespec ts = { .tv_sec = ms / 1000,
					.tv_nsec = (ms % 1000) * 1000000L };
	struct io_uring_cqe *cqe;
	int res = io_uring_wait_cqe_timeout(&r->uring, &cqe, &ts);

	if (res)
		return res;
	res = cqe->res;
	if (user_data)
		*user_data = cqe->user_data;
	io_uring_cqe_seen(&r->uring, cqe);
	return res;
}

/* A command that completes at once: its result. */
static inline int wtrack_ring_cmd(struct wtrack_test_ring *r, unsigned int op,
				  const struct kvm_wtrack_ring_cmd *cmd)
{
	wtrack_ring_submit(r, op, cmd);
	return wtrack_ring_reap(r);
}

/* A module parameter of kvm.ko: 0 or -errno. */
static inline int wtrack_set_kvm_param(const char *name, unsigned long val)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "/sys/module/kvm/parameters/%s", name);
	f = fopen(path, "w");
	if (!f)
		return -errno;
	fprintf(f, "%lu\n", val);
	return fclose(f) ? -errno : 0;
}

/*
 * The debug-only delay points (CONFIG_KVM_WRITE_TRACK_DEBUG): whether the
 * kernel has kvm.wtrack_delay_@point_us.
 */
static inline bool wtrack_have_delay(const char *point)
{
	char path[128];

	snprintf(path, sizeof(path), "/sys/module/kvm/parameters/wtrack_delay_%s_us", point);
	return !access(path, W_OK);
}

static inline void wtrack_set_delay(const char *point, unsigned long us)
{
	char name[64];

	snprintf(name, sizeof(name), "wtrack_delay_%s_us", point);
	TEST_ASSERT_EQ(wtrack_set_kvm_param(name, us), 0);
}

#endif /* SELFTEST_KVM_WTRACK_RING_UTIL_H */
