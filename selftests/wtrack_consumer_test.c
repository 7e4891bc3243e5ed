// SPDX-License-Identifier: GPL-2.0
/*
 * The ring's consumer is trusted less than the VMM: it may be another
 * process.  Whatever it does, it must not hold up the host, the vCPUs or
 * memslot updates, and its commands are all or nothing:
 *
 * - the worst COMMIT (1024 ranges of all guest-physical memory) and the
 *   worst release finish within a second;
 * - a read() whose buffer faults forever (a userfaultfd page nobody
 *   serves) holds up neither vCPUs posting events, nor the VMM's
 *   unprotects, nor memslot updates;
 * - a COMMIT that a read() races is not failed after it resolved, and a
 *   COMMIT_AND_FETCH refused for a FETCH in flight resolves nothing;
 * - a new consumer cannot attach while the old one's release unprotects,
 *   which would undo the new one's protections;
 * - while the release runs, a vCPU with more landed writes than its queue
 *   holds drops them and goes on: before, it looked for them again and
 *   again, spinning in the kernel until the release was done.
 *
 * The races are widened with kvm.wtrack_delay_{commit,release}_us, which
 * only a kernel with CONFIG_KVM_WRITE_TRACK_DEBUG has: without them those
 * cases skip.
 */
#include <fcntl.h>
#include <poll.h>
#include <linux/userfaultfd.h>
#include <sys/syscall.h>

#include "kvm_util.h"
#include "processor.h"
#include "hyperv.h"
#include "kselftest_harness.h"
#include "wtrack_ring_util.h"

#define DATA_GPA	0xc0000000ULL
#define DATA_SLOT	1
#define DATA_PAGES	64
#define NR_VCPUS	2
#define PATTERN		0x6f6f6f6f6f6f6f6fULL
#define PAGE(n)		(DATA_GPA + (n) * PAGE_SIZE)

/* Write @val + i at the start of @npages pages from @addr, in order. */
static void guest_code(uint64_t addr, uint64_t npages, uint64_t val)
{
	for (uint64_t i = 0; i < npages; i++)
		*(volatile uint64_t *)(addr + i * PAGE_SIZE) = val + i;
	GUEST_DONE();
}

FIXTURE(consumer) {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpus[NR_VCPUS];
	struct wtrack_vcpu_run runs[NR_VCPUS];
	struct wtrack_test_ring ring;
};

FIXTURE_SETUP(consumer)
{
	TEST_REQUIRE(kvm_check_cap(KVM_CAP_X86_WRITE_TRACK) & KVM_WTRACK_ENABLE_RING);
	self->vm = vm_create_with_vcpus(NR_VCPUS, guest_code, self->vcpus);
	vm_userspace_mem_region_add(self->vm, VM_MEM_SRC_ANONYMOUS, DATA_GPA,
				    DATA_SLOT, DATA_PAGES, 0);
	virt_map(self->vm, DATA_GPA, DATA_GPA, DATA_PAGES);
	memset(addr_gpa2hva(self->vm, DATA_GPA), 0x6f, DATA_PAGES * PAGE_SIZE);
	ASSERT_EQ(__vm_enable_wtrack_ring(self->vm, 64), 0);
	self->ring.fd = -1;
	wtrack_ring_attach(self->vm, &self->ring);
}

FIXTURE_TEARDOWN(consumer)
{
	if (wtrack_have_delay("commit"))
		wtrack_set_delay("commit", 0);
	if (wtrack_have_delay("release"))
		wtrack_set_delay("release", 0);
	wtrack_ring_detach(&self->ring);
	kvm_vm_free(self->vm);
}

static uint64_t *hva(struct kvm_vm *vm, uint64_t gpa)
{
	return addr_gpa2hva(vm, gpa);
}

/* vCPU @i writes @npages pages from @gpa, in a thread. */
static void start_writes(FIXTURE_DATA(consumer) *self, int i, uint64_t gpa,
			 int npages, uint64_t val)
{
	vcpu_args_set(self->vcpus[i], 3, gpa, npages, val);
	wtrack_vcpu_run_start(&self->runs[i], self->vcpus[i]);
}

static void check_waiting(struct __test_metadata *_metadata,
			  FIXTURE_DATA(consumer) *self, int i, uint64_t gpa)
{
	usleep(100 * 1000);
	ASSERT_FALSE(self->runs[i].done);
	ASSERT_EQ(*hva(self->vm, gpa), PATTERN);
}

static struct kvm_wtrack_ring_cmd commit_cmd(uint32_t head,
					     const struct kvm_wtrack_resolve *res,
					     uint32_t nr)
{
	return (struct kvm_wtrack_ring_cmd) {
		.head = head,
		.nr_resolve = nr,
		.resolve_addr = nr ? (uintptr_t)res : 0,
	};
}

/*
 * 1024 ranges that each cover all of guest-physical memory cost what the
 * VM's memory costs, not what the ranges say (minutes to hours before):
 * they are clipped to memslots.  So does a release with everything
 * protected.  The bound, a second, is generous under emulation: both take
 * a few milliseconds here.
 */
TEST_F(consumer, worst_commit_and_release_are_bounded)
{
	const uint64_t all = 1ULL << this_cpu_property(X86_PROPERTY_MAX_PHY_ADDR);
	struct kvm_wtrack_resolve *res = calloc(KVM_WTRACK_RESOLVE_MAX, sizeof(*res));
	struct kvm_wtrack_ring_cmd cmd;
	uint64_t t0, ms;

	ASSERT_NE(res, NULL);
	for (int i = 0; i < KVM_WTRACK_RESOLVE_MAX; i++)
		res[i] = (struct kvm_wtrack_resolve){ .gpa = 0, .size = all };

	vm_wtrack_protect(self->vm, DATA_GPA, DATA_PAGES * PAGE_SIZE);
	start_writes(self, 0, PAGE(5), 1, 0x55);
	wtrack_wait_until(wtrack_ring_tail(&self->ring) == 1);
	check_waiting(_metadata, self, 0, PAGE(5));

	cmd = commit_cmd(1, res, KVM_WTRACK_RESOLVE_MAX);
	t0 = wtrack_now_ms();
	ASSERT_EQ(wtrack_ring_cmd(&self->ring, KVM_WTRACK_RING_COMMIT, &cmd), 0);
	ms = wtrack_now_ms() - t0;
	printf("# COMMIT of %d ranges of 2^%u bytes: %lu ms\n", KVM_WTRACK_RESOLVE_MAX,
	       this_cpu_property(X86_PROPERTY_MAX_PHY_ADDR), ms);
	ASSERT_LT(ms, 1000);
	wtrack_vcpu_run_join(&self->runs[0], UCALL_DONE);
	ASSERT_EQ(*hva(self->vm, PAGE(5)), 0x55);

	/* Everything protected again, then the consumer goes. */
	vm_wtrack_protect(self->vm, DATA_GPA, DATA_PAGES * PAGE_SIZE);
	t0 = wtrack_now_ms();
	wtrack_ring_detach(&self->ring);
	ms = wtrack_now_ms() - t0;
	printf("# release with %d pages protected: %lu ms\n", DATA_PAGES, ms);
	ASSERT_LT(ms, 1000);
	start_writes(self, 1, PAGE(6), 1, 0x66);
	wtrack_vcpu_run_join(&self->runs[1], UCALL_DONE);
	free(res);
}

/* A page of this process that faults forever: userfaultfd, never served. */
static void *faulting_page(struct __test_metadata *_metadata, int *uffd)
{
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	void *p;

	*uffd = syscall(__NR_userfaultfd, O_CLOEXEC);
	if (*uffd < 0)
		return NULL;
	EXPECT_EQ(ioctl(*uffd, UFFDIO_API, &api), 0);
	p = mmap(NULL, getpagesize(), PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	EXPECT_NE(p, MAP_FAILED);
	reg.range.start = (uintptr_t)p;
	reg.range.len = getpagesize();
	EXPECT_EQ(ioctl(*uffd, UFFDIO_REGISTER, &reg), 0);
	return p;
}

struct reader {
	int fd;
	void *buf;
	size_t len;
	ssize_t r;
	volatile bool done;
};

static void *reader_thread(void *arg)
{
	struct reader *rd = arg;

	rd->r = read(rd->fd, rd->buf, rd->len);
	rd->done = true;
	return NULL;
}

struct unprotector {
	struct kvm_vm *vm;
	uint64_t gpa, size;
	volatile bool done;
};

static void *unprotect_thread(void *arg)
{
	struct unprotector *u = arg;

	vm_wtrack_unprotect(u->vm, u->gpa, u->size);
	u->done = true;
	return NULL;
}

/*
 * read() copies to user memory holding a lock of the consumer's only.
 * Before, it held the ring's lock, which vCPUs take to post and the
 * VMM's unprotect takes to release waiters: a buffer that never faults in
 * left both in D state.
 */
TEST_F(consumer, read_into_a_faulting_buffer_holds_up_nobody)
{
	struct unprotector u = { .vm = self->vm, .gpa = PAGE(0), .size = 2 * PAGE_SIZE };
	struct reader rd = { .fd = self->ring.fd, .len = getpagesize() };
	struct uffdio_range range;
	pthread_t reader, unprotector;
	int uffd;

	rd.buf = faulting_page(_metadata, &uffd);
	if (!rd.buf)
		SKIP(return, "no userfaultfd: %s", strerror(errno));

	vm_wtrack_protect(self->vm, PAGE(0), 2 * PAGE_SIZE);
	start_writes(self, 0, PAGE(0), 1, 0x10);
	wtrack_wait_until(wtrack_ring_tail(&self->ring) == 1);

	/* The reader takes event 0 and blocks copying it out. */
	pthread_create(&reader, NULL, reader_thread, &rd);
	usleep(200 * 1000);
	ASSERT_FALSE(rd.done);

	/* A vCPU posts, a memslot comes and goes, the VMM unprotects. */
	start_writes(self, 1, PAGE(1), 1, 0x11);
	wtrack_wait_until(wtrack_ring_tail(&self->ring) == 2);
	vm_userspace_mem_region_add(self->vm, VM_MEM_SRC_ANONYMOUS, 0xd0000000ULL,
				    DATA_SLOT + 1, 16, 0);
	vm_mem_region_delete(self->vm, DATA_SLOT + 1);
	pthread_create(&unprotector, NULL, unprotect_thread, &u);
	wtrack_wait_until(u.done);
	pthread_join(unprotector, NULL);
	wtrack_vcpu_run_join(&self->runs[0], UCALL_DONE);
	wtrack_vcpu_run_join(&self->runs[1], UCALL_DONE);
	ASSERT_FALSE(rd.done);

	/* Let the copy finish: the reader gets its event. */
	range.start = (uintptr_t)rd.buf;
	range.len = getpagesize();
	ASSERT_EQ(ioctl(uffd, UFFDIO_ZEROPAGE, &(struct uffdio_zeropage){ .range = range }), 0);
	pthread_join(reader, NULL);
	ASSERT_EQ(rd.r, sizeof(struct kvm_wtrack_event));
	ASSERT_EQ(((struct kvm_wtrack_event *)rd.buf)->gpa, PAGE(0));
	close(uffd);
}

struct committer {
	struct wtrack_test_ring *ring;
	struct kvm_wtrack_ring_cmd cmd;
	int res;
	volatile bool done;
};

static void *commit_thread(void *arg)
{
	struct committer *c = arg;

	/* Its own io_uring: the fixture's belongs to the main thread. */
	struct wtrack_test_ring r = { .fd = c->ring->fd };

	TEST_ASSERT_EQ(io_uring_queue_init(4, &r.uring, IORING_SETUP_SQE128), 0);
	c->res = wtrack_ring_cmd(&r, KVM_WTRACK_RING_COMMIT, &c->cmd);
	io_uring_queue_exit(&r.uring);
	c->done = true;
	return NULL;
}

/*
 * A COMMIT checks its head, resolves, then moves head.  Before, a read()
 * could move head in between: the COMMIT then failed with EINVAL, after
 * its resolve had released a vCPU, so a failing command had changed
 * something.  The delay holds the COMMIT between the two.
 */
TEST_F(consumer, commit_racing_read_is_all_or_nothing)
{
	struct kvm_wtrack_resolve res = { .gpa = PAGE(0), .size = PAGE_SIZE };
	struct committer c = { .ring = &self->ring, .cmd = commit_cmd(1, &res, 1) };
	struct kvm_wtrack_event ev[4];
	pthread_t committer;
	ssize_t n;

	if (!wtrack_have_delay("commit"))
		SKIP(return, "no kvm.wtrack_delay_commit_us (CONFIG_KVM_WRITE_TRACK_DEBUG)");

	vm_wtrack_protect(self->vm, PAGE(0), 2 * PAGE_SIZE);
	start_writes(self, 0, PAGE(0), 1, 0x20);
	wtrack_wait_until(wtrack_ring_tail(&self->ring) == 1);
	start_writes(self, 1, PAGE(1), 1, 0x21);
	wtrack_wait_until(wtrack_ring_tail(&self->ring) == 2);

	/* COMMIT: consumed event 0, resolve its page; read() takes both. */
	wtrack_set_delay("commit", 300 * 1000);
	pthread_create(&committer, NULL, commit_thread, &c);
	usleep(100 * 1000);
	fcntl(self->ring.fd, F_SETFL, O_NONBLOCK);
	n = read(self->ring.fd, ev, sizeof(ev));
	pthread_join(committer, NULL);
	wtrack_set_delay("commit", 0);

	if (c.res) {
		/* Failed: then nothing may have changed. */
		check_waiting(_metadata, self, 0, PAGE(0));
		TH_LOG("COMMIT failed (%d) after read() took %zd bytes", c.res, n);
		ASSERT_EQ(c.res, 0);
	}
	wtrack_vcpu_run_join(&self->runs[0], UCALL_DONE);
	/* read() waited for the COMMIT, then took the event after its head. */
	ASSERT_EQ(n, sizeof(ev[0]));
	ASSERT_EQ(ev[0].gpa, PAGE(1));
	ASSERT_EQ(self->ring.hdr->head, 2);

	vm_wtrack_unprotect(self->vm, PAGE(1), PAGE_SIZE);
	wtrack_vcpu_run_join(&self->runs[1], UCALL_DONE);
}

/* COMMIT_AND_FETCH with a FETCH in flight: EBUSY, and nothing resolved. */
TEST_F(consumer, refused_commit_and_fetch_resolves_nothing)
{
	struct kvm_wtrack_resolve res = { .gpa = PAGE(2), .size = PAGE_SIZE };
	struct kvm_wtrack_ring_cmd fetch = { .head = 0 };
	struct kvm_wtrack_ring_cmd cmd;

	wtrack_ring_submit(&self->ring, KVM_WTRACK_RING_FETCH, &fetch);
	usleep(50 * 1000);

	vm_wtrack_protect(self->vm, PAGE(2), PAGE_SIZE);
	cmd = commit_cmd(0, &res, 1);
	ASSERT_EQ(wtrack_ring_cmd(&self->ring, KVM_WTRACK_RING_COMMIT_AND_FETCH, &cmd),
		  -EBUSY);

	/* The page is still protected: the write posts, which ends the FETCH. */
	start_writes(self, 0, PAGE(2), 1, 0x22);
	ASSERT_EQ(wtrack_ring_reap(&self->ring), 1);
	check_waiting(_metadata, self, 0, PAGE(2));
	cmd = commit_cmd(1, &res, 1);
	ASSERT_EQ(wtrack_ring_cmd(&self->ring, KVM_WTRACK_RING_COMMIT, &cmd), 0);
	wtrack_vcpu_run_join(&self->runs[0], UCALL_DONE);
}

static void *close_thread(void *arg)
{
	close((int)(uintptr_t)arg);
	return NULL;
}

struct close_arg {
	int fd;
	volatile bool *closed;
};

/* close() the fd, and note when its release is done. */
static void *close_and_note_thread(void *arg)
{
	struct close_arg *c = arg;

	close(c->fd);
	*c->closed = true;
	return NULL;
}

/*
 * The old consumer's release unprotects everything.  Before, it detached
 * the ring first and a new consumer could attach and protect pages
 * meanwhile, which the release then unprotected: writes landed unseen.
 * The delay holds the release between the two.
 */
TEST_F(consumer, new_consumer_waits_for_the_old_release)
{
	struct wtrack_test_ring old = self->ring;
	pthread_t closer;
	int fd;

	if (!wtrack_have_delay("release"))
		SKIP(return, "no kvm.wtrack_delay_release_us (CONFIG_KVM_WRITE_TRACK_DEBUG)");

	/* Only the fd keeps the old ring now. */
	io_uring_queue_exit(&old.uring);
	munmap((void *)old.hdr, old.map_size);
	self->ring.fd = -1;
	self->ring.hdr = NULL;
	self->ring.have_uring = false;

	wtrack_set_delay("release", 500 * 1000);
	pthread_create(&closer, NULL, close_thread, (void *)(uintptr_t)old.fd);
	usleep(100 * 1000);

	fd = __vm_wtrack_ring_fd(self->vm);
	if (fd >= 0) {
		/* Attached during the release: its protection must survive it. */
		vm_wtrack_protect(self->vm, PAGE(3), PAGE_SIZE);
		pthread_join(closer, NULL);
		close(fd);
		TH_LOG("a new consumer attached while the old one's release ran");
		ASSERT_LT(fd, 0);
	}
	ASSERT_EQ(errno, EBUSY);
	ASSERT_EQ(__vm_wtrack(self->vm, KVM_WTRACK_PROTECT, PAGE(3), PAGE_SIZE), -1);
	ASSERT_EQ(errno, ENOTCONN);
	pthread_join(closer, NULL);
	wtrack_set_delay("release", 0);

	/* Released: the next consumer attaches and its protection holds. */
	wtrack_ring_attach(self->vm, &self->ring);
	vm_wtrack_protect(self->vm, PAGE(3), PAGE_SIZE);
	start_writes(self, 0, PAGE(3), 1, 0x33);
	wtrack_wait_until(wtrack_ring_tail(&self->ring) == 1);
	ASSERT_EQ(wtrack_ring_event(&self->ring, 0).gpa, PAGE(3));
	check_waiting(_metadata, self, 0, PAGE(3));
	vm_wtrack_unprotect(self->vm, PAGE(3), PAGE_SIZE);
	wtrack_vcpu_run_join(&self->runs[0], UCALL_DONE);
}

#define HV_HYPERCALL_ENABLE	BIT_ULL(0)
/* More landed writes than a vCPU's queue holds (16). */
#define MANY_LANDED		20

/*
 * KVM writes a Hyper-V hypercall page when userspace sets one: MANY_LANDED
 * protected pages written by the vCPU's own ioctls.  The consumer goes
 * before they are reported, and its release is held up: the vCPU's next
 * KVM_RUN drops them, as nobody is left to tell, and gets to the guest
 * while the release is still running.
 */
TEST_F(consumer, landed_writes_without_a_consumer_hold_up_nobody)
{
	struct kvm_vcpu *vcpu = self->vcpus[0];
	struct wtrack_test_ring old = self->ring;
	volatile bool closed = false;
	struct close_arg arg = { .fd = old.fd, .closed = &closed };
	pthread_t closer;
	int i;

	if (!wtrack_have_delay("release"))
		SKIP(return, "no kvm.wtrack_delay_release_us (CONFIG_KVM_WRITE_TRACK_DEBUG)");

	vcpu_set_hv_cpuid(vcpu);
	vcpu_set_msr(vcpu, HV_X64_MSR_GUEST_OS_ID, HYPERV_LINUX_OS_ID);
	vm_wtrack_protect(self->vm, DATA_GPA, MANY_LANDED * PAGE_SIZE);
	for (i = 0; i < MANY_LANDED; i++)
		vcpu_set_msr(vcpu, HV_X64_MSR_HYPERCALL, PAGE(i) | HV_HYPERCALL_ENABLE);

	/* Only the fd keeps the old ring now. */
	io_uring_queue_exit(&old.uring);
	munmap((void *)old.hdr, old.map_size);
	self->ring.fd = -1;
	self->ring.hdr = NULL;
	self->ring.have_uring = false;

	wtrack_set_delay("release", 3000 * 1000);
	pthread_create(&closer, NULL, close_and_note_thread, &arg);
	usleep(200 * 1000);

	/* The guest writes nothing and is done. */
	vcpu_args_set(vcpu, 3, DATA_GPA, 0, 0);
	vcpu_run(vcpu);
	ASSERT_FALSE(closed);
	ASSERT_EQ(get_ucall(vcpu, NULL), UCALL_DONE);
	pthread_join(closer, NULL);
	wtrack_set_delay("release", 0);
}

TEST_HARNESS_MAIN
