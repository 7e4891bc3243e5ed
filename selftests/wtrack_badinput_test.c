// SPDX-License-Identifier: GPL-2.0
/*
 * Every ioctl, enable-cap argument and ring fd operation of kvm-wtrack fed
 * its bad inputs, from a table: each row names the VM's state, the fd, the
 * call and its argument, and the exact errno.  After each refused call the
 * VM must be as it was: tracking still off (it can be enabled), or the
 * protected page still protected and the unprotected one not (a guest
 * write to each tells), and a ring fd still attachable or still attached.
 * Unaligned argument pointers are not bad input (copy_from_user() takes
 * them); a pointer that runs into an unreadable page is.  Every flags and
 * reserved field that userspace passes in must be 0, including those of
 * the ring's io_uring commands and their resolve ranges, and the commands
 * need an io_uring with 128-byte SQEs.  Last, the ring fd outlives the
 * VM's fds: it holds the VM until it is closed.
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <liburing.h>
#include <linux/kvm_vmware.h>

#include "kvm_util.h"
#include "processor.h"
#include "kselftest_harness.h"
#include "wtrack_util.h"

#define DATA_GPA	0xc0000000ULL
#define DATA_SLOT	1
#define DATA_PAGES	4
#define PAGE(n)		(DATA_GPA + (n) * PAGE_SIZE)
#define HOLE_GPA	0x100000000ULL		/* no memslot here */
#define RING_ENTRIES	16
#define TIMEOUT_MS	10000

/* PAGE(1) is never protected, PAGE(0) is once tracking is on. */
static void guest_code(void)
{
	*(volatile uint64_t *)PAGE(1) = 1;
	*(volatile uint64_t *)PAGE(0) = 1;
	GUEST_DONE();
}

enum vm_state {
	ST_NEW,		/* tracking off */
	ST_EXIT,	/* exit mode, PAGE(0) protected */
	ST_RING,	/* ring mode, a ring fd, PAGE(0) protected */
	ST_RING_NOFD,	/* ring mode, no ring fd */
};

enum fd_kind { FD_VM, FD_VCPU, FD_SYS, FD_RING, FD_NULLDEV, FD_VM_CHILD };

enum arg_kind {
	ARG_NONE,
	ARG_RANGE,	/* &row->range */
	ARG_CAP,	/* &row->cap */
	ARG_NULL,
	ARG_FAULTING,	/* a range that runs into an inaccessible page */
	ARG_ONE,	/* the integer argument 1 */
};

struct bad_call {
	const char *what;
	enum vm_state state;
	enum fd_kind fd;
	unsigned long cmd;
	enum arg_kind arg;
	struct kvm_wtrack_range range;
	struct kvm_enable_cap cap;
	int err;
};

#define GOOD_RANGE	{ .gpa = PAGE(2), .size = PAGE_SIZE }
#define ENABLE(...)	{ .cap = KVM_CAP_X86_WRITE_TRACK, .args = { __VA_ARGS__ } }
#define EXIT_MODE	KVM_WTRACK_ENABLE_EXIT
#define RING_MODE	KVM_WTRACK_ENABLE_RING

static const struct bad_call calls[] = {
	/* KVM_ENABLE_CAP(KVM_CAP_X86_WRITE_TRACK) */
	{ "enable: no mode", ST_NEW, FD_VM, KVM_ENABLE_CAP, ARG_CAP,
	  .cap = ENABLE(0), .err = EINVAL },
	{ "enable: both modes", ST_NEW, FD_VM, KVM_ENABLE_CAP, ARG_CAP,
	  .cap = ENABLE(EXIT_MODE | RING_MODE, RING_ENTRIES), .err = EINVAL },
	{ "enable: unknown flag", ST_NEW, FD_VM, KVM_ENABLE_CAP, ARG_CAP,
	  .cap = ENABLE(1ULL << 5), .err = EINVAL },
	{ "enable: unknown flag with a mode", ST_NEW, FD_VM, KVM_ENABLE_CAP, ARG_CAP,
	  .cap = ENABLE(EXIT_MODE | (1ULL << 63)), .err = EINVAL },
	{ "enable: exit mode with ring entries", ST_NEW, FD_VM, KVM_ENABLE_CAP, ARG_CAP,
	  .cap = ENABLE(EXIT_MODE, RING_ENTRIES), .err = EINVAL },
	{ "enable: ring of 0", ST_NEW, FD_VM, KVM_ENABLE_CAP, ARG_CAP,
	  .cap = ENABLE(RING_MODE, 0), .err = EINVAL },
	{ "enable: ring of 24", ST_NEW, FD_VM, KVM_ENABLE_CAP, ARG_CAP,
	  .cap = ENABLE(RING_MODE, 24), .err = EINVAL },
	{ "enable: ring below the minimum", ST_NEW, FD_VM, KVM_ENABLE_CAP, ARG_CAP,
	  .cap = ENABLE(RING_MODE, KVM_WTRACK_RING_MIN_ENTRIES / 2), .err = EINVAL },
	{ "enable: ring above the maximum", ST_NEW, FD_VM, KVM_ENABLE_CAP, ARG_CAP,
	  .cap = ENABLE(RING_MODE, KVM_WTRACK_RING_MAX_ENTRIES * 2ULL), .err = EINVAL },
	{ "enable: ring of 2^32 + 16", ST_NEW, FD_VM, KVM_ENABLE_CAP, ARG_CAP,
	  .cap = ENABLE(RING_MODE, (1ULL << 32) + 16), .err = EINVAL },
	{ "enable: args[2]", ST_NEW, FD_VM, KVM_ENABLE_CAP, ARG_CAP,
	  .cap = ENABLE(EXIT_MODE, 0, 1), .err = EINVAL },
	{ "enable: args[3]", ST_NEW, FD_VM, KVM_ENABLE_CAP, ARG_CAP,
	  .cap = ENABLE(EXIT_MODE, 0, 0, 1), .err = EINVAL },
	{ "enable: cap flags", ST_NEW, FD_VM, KVM_ENABLE_CAP, ARG_CAP,
	  .cap = { .cap = KVM_CAP_X86_WRITE_TRACK, .flags = 1, .args = { EXIT_MODE } },
	  .err = EINVAL },
	{ "enable: NULL", ST_NEW, FD_VM, KVM_ENABLE_CAP, ARG_NULL, .err = EFAULT },
	{ "enable: on the vCPU fd", ST_NEW, FD_VCPU, KVM_ENABLE_CAP, ARG_CAP,
	  .cap = ENABLE(EXIT_MODE), .err = EINVAL },
	{ "enable: from another process", ST_NEW, FD_VM_CHILD, KVM_ENABLE_CAP, ARG_CAP,
	  .cap = ENABLE(EXIT_MODE), .err = EIO },
	{ "enable: again", ST_EXIT, FD_VM, KVM_ENABLE_CAP, ARG_CAP,
	  .cap = ENABLE(EXIT_MODE), .err = EEXIST },
	{ "enable: ring mode after exit mode", ST_EXIT, FD_VM, KVM_ENABLE_CAP, ARG_CAP,
	  .cap = ENABLE(RING_MODE, RING_ENTRIES), .err = EEXIST },
	{ "enable: exit mode after ring mode", ST_RING, FD_VM, KVM_ENABLE_CAP, ARG_CAP,
	  .cap = ENABLE(EXIT_MODE), .err = EEXIST },

	/* KVM_WTRACK_PROTECT and KVM_WTRACK_UNPROTECT */
	{ "protect: tracking off", ST_NEW, FD_VM, KVM_WTRACK_PROTECT, ARG_RANGE,
	  GOOD_RANGE, .err = ENXIO },
	{ "unprotect: tracking off", ST_NEW, FD_VM, KVM_WTRACK_UNPROTECT, ARG_RANGE,
	  GOOD_RANGE, .err = ENXIO },
	{ "protect: NULL", ST_EXIT, FD_VM, KVM_WTRACK_PROTECT, ARG_NULL, .err = EFAULT },
	{ "unprotect: NULL", ST_EXIT, FD_VM, KVM_WTRACK_UNPROTECT, ARG_NULL, .err = EFAULT },
	{ "protect: range half readable", ST_EXIT, FD_VM, KVM_WTRACK_PROTECT, ARG_FAULTING,
	  GOOD_RANGE, .err = EFAULT },
	{ "protect: gpa not aligned", ST_EXIT, FD_VM, KVM_WTRACK_PROTECT, ARG_RANGE,
	  { .gpa = PAGE(2) + 8, .size = PAGE_SIZE }, .err = EINVAL },
	{ "unprotect: gpa not aligned", ST_EXIT, FD_VM, KVM_WTRACK_UNPROTECT, ARG_RANGE,
	  { .gpa = PAGE(0) + 8, .size = PAGE_SIZE }, .err = EINVAL },
	{ "protect: size 0", ST_EXIT, FD_VM, KVM_WTRACK_PROTECT, ARG_RANGE,
	  { .gpa = PAGE(2) }, .err = EINVAL },
	{ "protect: size not aligned", ST_EXIT, FD_VM, KVM_WTRACK_PROTECT, ARG_RANGE,
	  { .gpa = PAGE(2), .size = PAGE_SIZE + 1 }, .err = EINVAL },
	{ "unprotect: size not aligned", ST_EXIT, FD_VM, KVM_WTRACK_UNPROTECT, ARG_RANGE,
	  { .gpa = PAGE(0), .size = 1 }, .err = EINVAL },
	{ "protect: flags", ST_EXIT, FD_VM, KVM_WTRACK_PROTECT, ARG_RANGE,
	  { .gpa = PAGE(2), .size = PAGE_SIZE, .flags = 1 }, .err = EINVAL },
	{ "unprotect: flags", ST_EXIT, FD_VM, KVM_WTRACK_UNPROTECT, ARG_RANGE,
	  { .gpa = PAGE(0), .size = PAGE_SIZE, .flags = 1ULL << 63 }, .err = EINVAL },
	{ "protect: reserved[0]", ST_EXIT, FD_VM, KVM_WTRACK_PROTECT, ARG_RANGE,
	  { .gpa = PAGE(2), .size = PAGE_SIZE, .reserved = { 1 } }, .err = EINVAL },
	{ "protect: reserved[4]", ST_EXIT, FD_VM, KVM_WTRACK_PROTECT, ARG_RANGE,
	  { .gpa = PAGE(2), .size = PAGE_SIZE, .reserved = { [4] = 1 } }, .err = EINVAL },
	{ "protect: wraps around", ST_EXIT, FD_VM, KVM_WTRACK_PROTECT, ARG_RANGE,
	  { .gpa = -PAGE_SIZE, .size = 2 * PAGE_SIZE }, .err = EINVAL },
	{ "protect: beyond MAXPHYADDR", ST_EXIT, FD_VM, KVM_WTRACK_PROTECT, ARG_RANGE,
	  { .gpa = 1ULL << 52, .size = PAGE_SIZE }, .err = EINVAL },
	{ "protect: no memslot", ST_EXIT, FD_VM, KVM_WTRACK_PROTECT, ARG_RANGE,
	  { .gpa = HOLE_GPA, .size = PAGE_SIZE }, .err = ENOENT },
	{ "protect: past the memslot's end", ST_EXIT, FD_VM, KVM_WTRACK_PROTECT, ARG_RANGE,
	  { .gpa = PAGE(DATA_PAGES - 1), .size = 2 * PAGE_SIZE }, .err = ENOENT },
	{ "unprotect: starts before the memslot", ST_EXIT, FD_VM, KVM_WTRACK_UNPROTECT,
	  ARG_RANGE, { .gpa = DATA_GPA - PAGE_SIZE, .size = 2 * PAGE_SIZE }, .err = ENOENT },
	{ "protect: ring mode, no ring fd", ST_RING_NOFD, FD_VM, KVM_WTRACK_PROTECT, ARG_RANGE,
	  GOOD_RANGE, .err = ENOTCONN },
	{ "protect: on the vCPU fd", ST_EXIT, FD_VCPU, KVM_WTRACK_PROTECT, ARG_RANGE,
	  GOOD_RANGE, .err = EINVAL },
	{ "protect: on /dev/kvm", ST_EXIT, FD_SYS, KVM_WTRACK_PROTECT, ARG_RANGE,
	  GOOD_RANGE, .err = EINVAL },
	{ "protect: on the ring fd", ST_RING, FD_RING, KVM_WTRACK_PROTECT, ARG_RANGE,
	  GOOD_RANGE, .err = ENOTTY },
	{ "protect: on /dev/null", ST_EXIT, FD_NULLDEV, KVM_WTRACK_PROTECT, ARG_RANGE,
	  GOOD_RANGE, .err = ENOTTY },
	{ "protect: from another process", ST_EXIT, FD_VM_CHILD, KVM_WTRACK_PROTECT,
	  ARG_RANGE, GOOD_RANGE, .err = EIO },
	{ "unprotect: from another process", ST_EXIT, FD_VM_CHILD, KVM_WTRACK_UNPROTECT,
	  ARG_RANGE, { .gpa = PAGE(0), .size = PAGE_SIZE }, .err = EIO },

	/* The VMware capabilities (Documentation/vmware.rst) */
	{ "vmware hypercall: args[0] 2", ST_NEW, FD_VM, KVM_ENABLE_CAP, ARG_CAP,
	  .cap = { .cap = KVM_CAP_X86_VMWARE_HYPERCALL, .args = { 2 } }, .err = EINVAL },
	{ "vmware hypercall: args[1]", ST_NEW, FD_VM, KVM_ENABLE_CAP, ARG_CAP,
	  .cap = { .cap = KVM_CAP_X86_VMWARE_HYPERCALL, .args = { 1, 1 } }, .err = EINVAL },
	{ "vmware hypercall: args[3]", ST_NEW, FD_VM, KVM_ENABLE_CAP, ARG_CAP,
	  .cap = { .cap = KVM_CAP_X86_VMWARE_HYPERCALL, .args = { 1, 0, 0, 1 } },
	  .err = EINVAL },
	{ "vmware hypercall: cap flags", ST_NEW, FD_VM, KVM_ENABLE_CAP, ARG_CAP,
	  .cap = { .cap = KVM_CAP_X86_VMWARE_HYPERCALL, .flags = 1, .args = { 1 } },
	  .err = EINVAL },
	{ "vmware hypercall: on the vCPU fd", ST_NEW, FD_VCPU, KVM_ENABLE_CAP, ARG_CAP,
	  .cap = { .cap = KVM_CAP_X86_VMWARE_HYPERCALL, .args = { 1 } }, .err = EINVAL },
	{ "vmware nested L0: args[0] 2", ST_NEW, FD_VM, KVM_ENABLE_CAP, ARG_CAP,
	  .cap = { .cap = KVM_CAP_X86_VMWARE_NESTED_BACKDOOR_L0, .args = { 2 } },
	  .err = EINVAL },
	{ "vmware nested L0: args[2]", ST_NEW, FD_VM, KVM_ENABLE_CAP, ARG_CAP,
	  .cap = { .cap = KVM_CAP_X86_VMWARE_NESTED_BACKDOOR_L0, .args = { 1, 0, 1 } },
	  .err = EINVAL },

	/* KVM_WTRACK_RING_FD */
	{ "ring fd: tracking off", ST_NEW, FD_VM, KVM_WTRACK_RING_FD, .err = ENXIO },
	{ "ring fd: exit mode", ST_EXIT, FD_VM, KVM_WTRACK_RING_FD, .err = EINVAL },
	{ "ring fd: a second one", ST_RING, FD_VM, KVM_WTRACK_RING_FD, .err = EBUSY },
	{ "ring fd: on the vCPU fd", ST_RING_NOFD, FD_VCPU, KVM_WTRACK_RING_FD, .err = EINVAL },
	{ "ring fd: on /dev/kvm", ST_RING_NOFD, FD_SYS, KVM_WTRACK_RING_FD, .err = EINVAL },
	{ "ring fd: from another process", ST_RING_NOFD, FD_VM_CHILD, KVM_WTRACK_RING_FD,
	  .err = EIO },
	{ "ring fd: argument 1", ST_RING_NOFD, FD_VM, KVM_WTRACK_RING_FD, ARG_ONE,
	  .err = EINVAL },
	{ "ring fd: argument 1, a ring attached", ST_RING, FD_VM, KVM_WTRACK_RING_FD,
	  ARG_ONE, .err = EINVAL },
	{ "ring fd: argument 1, exit mode", ST_EXIT, FD_VM, KVM_WTRACK_RING_FD, ARG_ONE,
	  .err = EINVAL },
};

struct vm {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
	int ring_fd;
};

static void vm_setup(struct vm *v, enum vm_state state)
{
	struct kvm_enable_cap ring = ENABLE(RING_MODE, RING_ENTRIES);

	v->vm = vm_create_with_one_vcpu(&v->vcpu, guest_code);
	vm_userspace_mem_region_add(v->vm, VM_MEM_SRC_ANONYMOUS, DATA_GPA, DATA_SLOT,
				    DATA_PAGES, 0);
	virt_map(v->vm, DATA_GPA, DATA_GPA, DATA_PAGES);
	v->ring_fd = -1;

	switch (state) {
	case ST_NEW:
		return;
	case ST_EXIT:
		vm_enable_wtrack(v->vm, KVM_WTRACK_ENABLE_EXIT);
		break;
	case ST_RING:
	case ST_RING_NOFD:
		vm_ioctl(v->vm, KVM_ENABLE_CAP, &ring);
		if (state == ST_RING_NOFD)
			return;
		v->ring_fd = __vm_ioctl(v->vm, KVM_WTRACK_RING_FD, NULL);
		TEST_ASSERT(v->ring_fd >= 0, "KVM_WTRACK_RING_FD");
		break;
	}
	vm_wtrack_protect(v->vm, PAGE(0), PAGE_SIZE);
}

static void vm_teardown(struct vm *v)
{
	kvm_vm_free(v->vm);
	if (v->ring_fd >= 0)
		close(v->ring_fd);
}

/* The call in a child process; its errno comes back as the exit status. */
static int ioctl_in_child(int fd, unsigned long cmd, void *arg)
{
	int status;
	pid_t pid = fork();

	TEST_ASSERT(pid >= 0, "fork");
	if (!pid)
		_exit(ioctl(fd, cmd, arg) < 0 ? errno : 0);
	TEST_ASSERT(waitpid(pid, &status, 0) == pid && WIFEXITED(status), "child");
	errno = WEXITSTATUS(status);
	return errno ? -1 : 0;
}

/* A range whose second half lies on a page that cannot be read. */
static void *faulting_range(const struct kvm_wtrack_range *range)
{
	static char *map;
	size_t half = sizeof(*range) / 2;

	if (!map) {
		map = mmap(NULL, 2 * getpagesize(), PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		TEST_ASSERT(map != MAP_FAILED, "mmap");
		TEST_ASSERT(!mprotect(map + getpagesize(), getpagesize(), PROT_NONE),
			    "mprotect");
	}
	memcpy(map + getpagesize() - half, range, half);
	return map + getpagesize() - half;
}

/* @fd is the call's own, closed afterwards; errno survives. */
static int ioctl_and_close(int fd, unsigned long cmd, void *arg)
{
	int r = ioctl(fd, cmd, arg), err = errno;

	close(fd);
	errno = err;
	return r;
}

static void *call_arg(const struct bad_call *c, struct kvm_wtrack_range *range,
		      struct kvm_enable_cap *cap)
{
	switch (c->arg) {
	case ARG_RANGE:
		return range;
	case ARG_CAP:
		return cap;
	case ARG_FAULTING:
		return faulting_range(range);
	case ARG_ONE:
		return (void *)1;
	default:
		return NULL;
	}
}

static int do_call(struct vm *v, const struct bad_call *c)
{
	struct kvm_wtrack_range range = c->range;
	struct kvm_enable_cap cap = c->cap;
	void *arg = call_arg(c, &range, &cap);

	switch (c->fd) {
	case FD_VM_CHILD:
		return ioctl_in_child(v->vm->fd, c->cmd, arg);
	case FD_VM:
		return ioctl(v->vm->fd, c->cmd, arg);
	case FD_VCPU:
		return ioctl(v->vcpu->fd, c->cmd, arg);
	case FD_RING:
		return ioctl(v->ring_fd, c->cmd, arg);
	case FD_SYS:
		return ioctl_and_close(open_kvm_dev_path_or_exit(), c->cmd, arg);
	case FD_NULLDEV:
		return ioctl_and_close(open("/dev/null", O_RDWR), c->cmd, arg);
	}
	return -1;
}

/* A run of guest_code() in its own thread, for ring mode. */
struct vcpu_run {
	struct kvm_vcpu *vcpu;
	pthread_t thread;
	int r;
};

static void *vcpu_run_thread(void *arg)
{
	struct vcpu_run *run = arg;

	run->r = __vcpu_run(run->vcpu);
	return NULL;
}

static void check_done(struct kvm_vcpu *vcpu)
{
	struct ucall uc;

	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
	if (get_ucall(vcpu, &uc) == UCALL_ABORT)
		REPORT_GUEST_ASSERT(uc);
	TEST_ASSERT_EQ(uc.cmd, UCALL_DONE);
}

/* Ring mode: the write to PAGE(0) becomes the ring's next event. */
static void check_ring_state(struct vm *v)
{
	struct pollfd pfd = { .fd = v->ring_fd, .events = POLLIN };
	struct kvm_wtrack_event ev;
	struct vcpu_run run = { .vcpu = v->vcpu };

	pthread_create(&run.thread, NULL, vcpu_run_thread, &run);
	TEST_ASSERT(poll(&pfd, 1, TIMEOUT_MS) == 1, "no event on the ring");
	TEST_ASSERT(read(v->ring_fd, &ev, sizeof(ev)) == sizeof(ev), "read the ring");
	TEST_ASSERT_EQ(ev.gpa, PAGE(0));
	TEST_ASSERT_EQ(ev.seq, 0);
	TEST_ASSERT_EQ(*(uint64_t *)addr_gpa2hva(v->vm, PAGE(1)), 1);
	vm_wtrack_unprotect(v->vm, PAGE(0), PAGE_SIZE);
	pthread_join(run.thread, NULL);
	TEST_ASSERT(!run.r, "KVM_RUN: %d", run.r);
	check_done(v->vcpu);
}

/* What a refused call must have left as it was. */
static void check_state(struct vm *v, enum vm_state state)
{
	struct kvm_enable_cap exit = ENABLE(EXIT_MODE);

	switch (state) {
	case ST_NEW:
		TEST_ASSERT(!__vm_ioctl(v->vm, KVM_ENABLE_CAP, &exit),
			    "tracking can no longer be enabled");
		return;
	case ST_RING_NOFD:
		v->ring_fd = __vm_ioctl(v->vm, KVM_WTRACK_RING_FD, NULL);
		TEST_ASSERT(v->ring_fd >= 0, "a ring fd can no longer be created");
		return;
	case ST_EXIT:
		vcpu_run_to_wtrack_exit(v->vcpu, PAGE(0));
		TEST_ASSERT_EQ(*(uint64_t *)addr_gpa2hva(v->vm, PAGE(1)), 1);
		vm_wtrack_unprotect(v->vm, PAGE(0), PAGE_SIZE);
		vcpu_run(v->vcpu);
		check_done(v->vcpu);
		return;
	case ST_RING:
		check_ring_state(v);
		return;
	}
}

TEST(bad_calls)
{
	int nr = 0;

	TEST_REQUIRE((kvm_check_cap(KVM_CAP_X86_WRITE_TRACK) &
		      (KVM_WTRACK_ENABLE_EXIT | KVM_WTRACK_ENABLE_RING)) ==
		     (KVM_WTRACK_ENABLE_EXIT | KVM_WTRACK_ENABLE_RING));

	for (size_t i = 0; i < ARRAY_SIZE(calls); i++) {
		const struct bad_call *c = &calls[i];
		struct vm v;
		int r;

		vm_setup(&v, c->state);
		r = do_call(&v, c);
		ASSERT_EQ(r, -1) TH_LOG("%s: succeeded", c->what);
		ASSERT_EQ(errno, c->err) TH_LOG("%s: errno %d, want %d", c->what, errno, c->err);
		check_state(&v, c->state);
		vm_teardown(&v);
		nr++;
	}
	TH_LOG("%d bad calls refused with the documented errno, nothing changed", nr);
}

/*
 * The ring fd's own operations, in ring mode with PAGE(0) protected.  A
 * COMMIT's resolve of PAGE(0) (RES_PAGE0 and the RES_ variants of it)
 * that a bad field fails must leave PAGE(0) protected.
 */
enum ring_op { OP_READ_SHORT, OP_MMAP_WRITABLE, OP_MMAP_PAST_END, OP_URING_CMD,
	       OP_URING_CMD_SQE64 };
enum resolve_arg {
	RES_NONE,
	RES_NULL,	/* nr_resolve 1, no array */
	RES_UNALIGNED,
	RES_TOO_MANY,
	RES_PAGE0,
	RES_FLAGS,	/* PAGE(0), with flags */
	RES_RESERVED,	/* PAGE(0), with reserved */
	RES_SECOND_BAD,	/* PAGE(0), then a range with flags */
	RES_ADDR_ONLY,	/* an array, nr_resolve 0 */
};

struct bad_ring_call {
	const char *what;
	enum ring_op op;
	uint32_t cmd_op;
	uint32_t head;
	enum resolve_arg resolve;
	int err;
	/* Fields that must be 0. */
	uint32_t flags, reserved0;
	uint64_t reserved[3];
};

#define COMMIT		KVM_WTRACK_RING_COMMIT
#define COMMIT_FETCH	KVM_WTRACK_RING_COMMIT_AND_FETCH
#define FETCH		KVM_WTRACK_RING_FETCH

static const struct bad_ring_call ring_calls[] = {
	{ "read: shorter than an event", OP_READ_SHORT, .err = EINVAL },
	{ "mmap: writable", OP_MMAP_WRITABLE, .err = EPERM },
	{ "mmap: past the ring", OP_MMAP_PAST_END, .err = EINVAL },
	{ "commit: head past tail", OP_URING_CMD, COMMIT, 1, .err = EINVAL },
	{ "commit: head far past tail", OP_URING_CMD, COMMIT, -1u, .err = EINVAL },
	{ "commit: head past tail, with a resolve", OP_URING_CMD, COMMIT, 1, RES_PAGE0,
	  .err = EINVAL },
	{ "commit: resolve array NULL", OP_URING_CMD, COMMIT, 0, RES_NULL, .err = EFAULT },
	{ "commit: unaligned range", OP_URING_CMD, COMMIT, 0, RES_UNALIGNED, .err = EINVAL },
	{ "commit: above RESOLVE_MAX", OP_URING_CMD, COMMIT, 0, RES_TOO_MANY, .err = EINVAL },
	{ "commit: an array with nr_resolve 0", OP_URING_CMD, COMMIT, 0, RES_ADDR_ONLY,
	  .err = EINVAL },
	{ "commit: resolve flags", OP_URING_CMD, COMMIT, 0, RES_FLAGS, .err = EINVAL },
	{ "commit: resolve reserved", OP_URING_CMD, COMMIT, 0, RES_RESERVED, .err = EINVAL },
	{ "commit: second resolve's flags", OP_URING_CMD, COMMIT, 0, RES_SECOND_BAD,
	  .err = EINVAL },
	{ "commit: cmd flags", OP_URING_CMD, COMMIT, 0, RES_PAGE0, .err = EINVAL,
	  .flags = 1 },
	{ "commit: cmd flag 31", OP_URING_CMD, COMMIT, 0, RES_PAGE0, .err = EINVAL,
	  .flags = 1u << 31 },
	{ "commit: cmd reserved0", OP_URING_CMD, COMMIT, 0, RES_PAGE0, .err = EINVAL,
	  .reserved0 = 1 },
	{ "commit: cmd reserved[0]", OP_URING_CMD, COMMIT, 0, RES_PAGE0, .err = EINVAL,
	  .reserved = { 1 } },
	{ "commit: cmd reserved[1]", OP_URING_CMD, COMMIT, 0, RES_PAGE0, .err = EINVAL,
	  .reserved = { [1] = 1ULL << 63 } },
	{ "commit: cmd reserved[2]", OP_URING_CMD, COMMIT, 0, RES_PAGE0, .err = EINVAL,
	  .reserved = { [2] = 1 } },
	{ "commit and fetch: head past tail", OP_URING_CMD, COMMIT_FETCH, 1, .err = EINVAL },
	{ "commit and fetch: resolve flags", OP_URING_CMD, COMMIT_FETCH, 0, RES_FLAGS,
	  .err = EINVAL },
	{ "commit and fetch: an array with nr_resolve 0", OP_URING_CMD, COMMIT_FETCH, 0,
	  RES_ADDR_ONLY, .err = EINVAL },
	{ "commit and fetch: cmd flags", OP_URING_CMD, COMMIT_FETCH, 0, RES_PAGE0,
	  .err = EINVAL, .flags = 1 },
	{ "commit and fetch: cmd reserved0", OP_URING_CMD, COMMIT_FETCH, 0, RES_PAGE0,
	  .err = EINVAL, .reserved0 = 1u << 31 },
	{ "commit and fetch: cmd reserved[2]", OP_URING_CMD, COMMIT_FETCH, 0, RES_PAGE0,
	  .err = EINVAL, .reserved = { [2] = 1 } },
	{ "fetch: with a resolve array", OP_URING_CMD, FETCH, 0, RES_UNALIGNED, .err = EINVAL },
	{ "fetch: with nr_resolve only", OP_URING_CMD, FETCH, 0, RES_NULL, .err = EINVAL },
	{ "fetch: with an address only", OP_URING_CMD, FETCH, 0, RES_ADDR_ONLY,
	  .err = EINVAL },
	{ "fetch: head past tail", OP_URING_CMD, FETCH, 1, .err = EINVAL },
	{ "fetch: cmd flags", OP_URING_CMD, FETCH, 0, .err = EINVAL, .flags = 1 },
	{ "fetch: cmd reserved0", OP_URING_CMD, FETCH, 0, .err = EINVAL, .reserved0 = 1 },
	{ "fetch: cmd reserved[0]", OP_URING_CMD, FETCH, 0, .err = EINVAL,
	  .reserved = { 1 } },
	{ "unknown command", OP_URING_CMD, 0xdead, 0, .err = ENOTTY },
	{ "fetch: a 64-byte SQE", OP_URING_CMD_SQE64, FETCH, 0, .err = EINVAL },
	{ "commit: a 64-byte SQE", OP_URING_CMD_SQE64, COMMIT, 0, .err = EINVAL },
	{ "commit and fetch: a 64-byte SQE", OP_URING_CMD_SQE64, COMMIT_FETCH, 0,
	  .err = EINVAL },
};

/*
 * One io_uring command on the ring fd; its result, or -ETIME if it did not
 * complete (a FETCH the kernel wrongly took).  With @sqe64 the io_uring
 * has 64-byte SQEs, which hold only the command's first 16 bytes.
 */
static int uring_cmd(int fd, const struct bad_ring_call *c)
{
	static struct kvm_wtrack_resolve res[KVM_WTRACK_RESOLVE_MAX + 1];
	struct kvm_wtrack_ring_cmd cmd = {
		.head = c->head,
		.flags = c->flags,
		.reserved0 = c->reserved0,
		.reserved = { c->reserved[0], c->reserved[1], c->reserved[2] },
	};
	bool sqe64 = c->op == OP_URING_CMD_SQE64;
	struct io_uring_params p = { .flags = sqe64 ? 0 : IORING_SETUP_SQE128 };
	struct __kernel_timespec ts = { .tv_sec = TIMEOUT_MS / 1000 };
	size_t room = sqe64 ? sizeof(struct io_uring_sqe) - offsetof(struct io_uring_sqe, cmd)
			    : sizeof(cmd);
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	struct io_uring uring;
	int r;

	memset(res, 0, sizeof(res));
	res[0] = (struct kvm_wtrack_resolve){ .gpa = PAGE(0), .size = PAGE_SIZE };
	res[1] = (struct kvm_wtrack_resolve){ .gpa = PAGE(2), .size = PAGE_SIZE };
	switch (c->resolve) {
	case RES_NONE:
		break;
	case RES_NULL:
		cmd.nr_resolve = 1;
		break;
	case RES_UNALIGNED:
		res[0].gpa += 8;
		/* fallthrough */
	case RES_PAGE0:
		cmd.nr_resolve = 1;
		break;
	case RES_TOO_MANY:
		cmd.nr_resolve = KVM_WTRACK_RESOLVE_MAX + 1;
		break;
	case RES_FLAGS:
		res[0].flags = 1;
		cmd.nr_resolve = 1;
		break;
	case RES_RESERVED:
		res[0].reserved = 1ULL << 63;
		cmd.nr_resolve = 1;
		break;
	case RES_SECOND_BAD:
		res[1].flags = 1ULL << 40;
		cmd.nr_resolve = 2;
		break;
	case RES_ADDR_ONLY:
		break;
	}
	if (c->resolve != RES_NONE && c->resolve != RES_NULL)
		cmd.resolve_addr = (uintptr_t)res;

	TEST_ASSERT(!io_uring_queue_init_params(4, &uring, &p), "io_uring_queue_init_params");
	TEST_ASSERT(!sqe64 == !!(uring.flags & IORING_SETUP_SQE128), "SQE size");
	sqe = io_uring_get_sqe(&uring);
	io_uring_prep_rw(IORING_OP_URING_CMD, sqe, fd, NULL, 0, 0);
	sqe->cmd_op = c->cmd_op;
	memcpy(sqe->cmd, &cmd, room < sizeof(cmd) ? room : sizeof(cmd));
	TEST_ASSERT(io_uring_submit(&uring) == 1, "io_uring_submit");
	r = io_uring_wait_cqe_timeout(&uring, &cqe, &ts);
	if (!r) {
		r = cqe->res;
		io_uring_cqe_seen(&uring, cqe);
	}
	io_uring_queue_exit(&uring);
	return r;
}

static int do_ring_call(int fd, const struct bad_ring_call *c)
{
	struct kvm_wtrack_event ev;
	void *map;

	switch (c->op) {
	case OP_READ_SHORT:
		return read(fd, &ev, sizeof(ev) - 1) < 0 ? -errno : 0;
	case OP_MMAP_WRITABLE:
	case OP_MMAP_PAST_END:
		map = mmap(NULL, getpagesize(), PROT_READ |
			   (c->op == OP_MMAP_WRITABLE ? PROT_WRITE : 0), MAP_SHARED, fd,
			   c->op == OP_MMAP_PAST_END ? 1024 * getpagesize() : 0);
		if (map == MAP_FAILED)
			return -errno;
		munmap(map, getpagesize());
		return 0;
	case OP_URING_CMD:
	case OP_URING_CMD_SQE64:
		return uring_cmd(fd, c);
	}
	return 0;
}

TEST(bad_ring_calls)
{
	TEST_REQUIRE(kvm_check_cap(KVM_CAP_X86_WRITE_TRACK) & KVM_WTRACK_ENABLE_RING);

	for (size_t i = 0; i < ARRAY_SIZE(ring_calls); i++) {
		const struct bad_ring_call *c = &ring_calls[i];
		struct vm v;
		int r;

		vm_setup(&v, ST_RING);
		r = do_ring_call(v.ring_fd, c);
		ASSERT_EQ(r, -c->err) TH_LOG("%s: %d, want %d", c->what, r, -c->err);
		check_state(&v, ST_RING);
		vm_teardown(&v);
	}
	TH_LOG("%zu bad ring fd calls refused, nothing changed", ARRAY_SIZE(ring_calls));
}

/*
 * The VM's and vCPU's fds closed and its memory unmapped: the ring fd
 * still works (nothing to read, a commit that resolves the page), and
 * closing it tears the VM down.
 */
TEST(ring_fd_after_the_vm_fd)
{
	struct bad_ring_call commit = { .op = OP_URING_CMD,
					.cmd_op = KVM_WTRACK_RING_COMMIT,
					.resolve = RES_PAGE0 };
	struct kvm_wtrack_event ev;
	struct vm v;
	int fd;

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_X86_WRITE_TRACK) & KVM_WTRACK_ENABLE_RING);
	vm_setup(&v, ST_RING);
	fd = v.ring_fd;
	kvm_vm_free(v.vm);

	fcntl(fd, F_SETFL, O_NONBLOCK);
	ASSERT_EQ(read(fd, &ev, sizeof(ev)), -1);
	ASSERT_EQ(errno, EAGAIN);
	ASSERT_EQ(uring_cmd(fd, &commit), 0);
	ASSERT_EQ(close(fd), 0);
}

TEST_HARNESS_MAIN
