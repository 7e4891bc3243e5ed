// SPDX-License-Identifier: GPL-2.0
/*
 * A bounded fuzzer of kvm-wtrack: random sequences of its ioctls (valid
 * and not), ring consumers coming and going, memslot changes and guest
 * writes from two vCPUs, in a series of VMs, for WTRACK_FUZZ_SECONDS
 * (default 20) from the seed WTRACK_FUZZ_SEED (default: the time, printed
 * first).  The sequence of operations is a function of the seed; the
 * vCPUs' interleaving with it is not.
 *
 * It looks for what the kernel log check and the debug kernel catch
 * (WARN, KASAN, lockdep, leaks), for hangs (a vCPU that never finishes
 * its writes fails the run), and for an errno that the documented ones
 * do not explain.  A finding becomes a test of its own in the other
 * wtrack_*_test files.
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>

#include "kvm_util.h"
#include "processor.h"
#include "kselftest_harness.h"
#include "wtrack_util.h"

#define A_GPA		0xc0000000ULL	/* always there */
#define A_SLOT		1
#define A_PAGES		512
#define B_GPA		0xd0000000ULL	/* comes and goes */
#define B_SLOT		2
#define B_PAGES		64
#define NR_VCPUS	2
#define OPS_PER_VM	400
#define TIMEOUT_MS	20000

/* Guest: write random pages of both slots (B may be absent: MMIO). */
static void guest_code(uint64_t seed)
{
	for (;;) {
		uint64_t r = seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		uint64_t gpa = (r >> 40) & 1 ? B_GPA + ((r >> 8) % B_PAGES) * PAGE_SIZE :
					      A_GPA + ((r >> 8) % A_PAGES) * PAGE_SIZE;

		*(volatile uint64_t *)(gpa + ((r >> 20) & 0x1f8)) = r;
		GUEST_SYNC(0);
	}
}

struct fuzz {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpus[NR_VCPUS];
	pthread_t threads[NR_VCPUS];
	volatile bool stop;
	bool ring;
	int ring_fd;
	bool b_present;
	uint64_t syncs[NR_VCPUS];
	uint64_t ops, errors;
};

/* The VM being fuzzed, for its vCPU threads. */
static struct fuzz *cur;

static void noop(int sig)
{
}

/* A report, from the ring or an exit, is one of the two kinds, well formed. */
static void check_report(uint64_t flags, uint64_t gpa, uint64_t size)
{
	const uint64_t landed = KVM_WTRACK_EVENT_LANDED;

	TEST_ASSERT(flags == 0 || flags == landed, "report flags %#lx", flags);
	if (flags == landed)
		TEST_ASSERT(!(gpa & (PAGE_SIZE - 1)) && size == PAGE_SIZE,
			    "landed: gpa %#lx size %lu", gpa, size);
	else
		TEST_ASSERT_EQ(size, wtrack_stop_size(gpa));
}

/*
 * A vCPU: runs, and in exit mode unprotects what it is stopped on.  A
 * write KVM made itself (a guest page table's A/D bits under shadow
 * paging, when a random range covers one) needs nothing.
 */
static void *vcpu_thread(void *arg)
{
	struct kvm_vcpu *vcpu = arg;
	struct fuzz *f = cur;
	unsigned int idx = vcpu->id;
	struct kvm_run *run = vcpu->run;

	while (!f->stop) {
		int r = __vcpu_run(vcpu);
		struct ucall uc;

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EFAULT &&
		    run->exit_reason == KVM_EXIT_MEMORY_FAULT) {
			uint64_t page = run->memory_fault.gpa & ~(PAGE_SIZE - 1);
			int e = __vm_wtrack(vcpu->vm, KVM_WTRACK_UNPROTECT, page, PAGE_SIZE);

			TEST_ASSERT_EQ(run->memory_fault.flags, WTRACK_EXIT_FLAGS);
			check_report(0, run->memory_fault.gpa, run->memory_fault.size);
			TEST_ASSERT(!e || errno == ENOENT, "unprotect %#lx: errno %d", page, errno);
			continue;
		}
		TEST_ASSERT(!r, "KVM_RUN: errno %d", errno);
		if (run->exit_reason == KVM_EXIT_WTRACK_LANDED) {
			TEST_ASSERT(!f->ring, "a landed exit in ring mode");
			TEST_ASSERT(run->wtrack_landed.flags & KVM_WTRACK_EVENT_LANDED,
				    "landed exit flags %#llx", run->wtrack_landed.flags);
			check_report(run->wtrack_landed.flags, run->wtrack_landed.gpa,
				     run->wtrack_landed.size);
			continue;
		}
		if (run->exit_reason == KVM_EXIT_MMIO)
			continue;	/* slot B is away */
		TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
		if (get_ucall(vcpu, &uc) == UCALL_ABORT)
			REPORT_GUEST_ASSERT(uc);
		f->syncs[idx]++;
	}
	return NULL;
}

static void vm_start(struct fuzz *f, unsigned int *seed)
{
	struct kvm_enable_cap cap = { .cap = KVM_CAP_X86_WRITE_TRACK };

	memset(f, 0, sizeof(*f));
	f->vm = vm_create_with_vcpus(NR_VCPUS, guest_code, f->vcpus);
	cur = f;
	vm_userspace_mem_region_add(f->vm, VM_MEM_SRC_ANONYMOUS, A_GPA, A_SLOT, A_PAGES, 0);
	vm_userspace_mem_region_add(f->vm, VM_MEM_SRC_ANONYMOUS, B_GPA, B_SLOT, B_PAGES, 0);
	virt_map(f->vm, A_GPA, A_GPA, A_PAGES);
	virt_map(f->vm, B_GPA, B_GPA, B_PAGES);
	f->b_present = true;
	f->ring_fd = -1;
	f->ring = rand_r(seed) & 1;
	cap.args[0] = f->ring ? KVM_WTRACK_ENABLE_RING : KVM_WTRACK_ENABLE_EXIT;
	cap.args[1] = f->ring ? 16 << (rand_r(seed) % 4) : 0;
	vm_ioctl(f->vm, KVM_ENABLE_CAP, &cap);
	for (int i = 0; i < NR_VCPUS; i++) {
		vcpu_args_set(f->vcpus[i], 1, (uint64_t)rand_r(seed));
		pthread_create(&f->threads[i], NULL, vcpu_thread, f->vcpus[i]);
	}
}

/* Any documented errno of ours is fine for random input; others are not. */
static void check_errno(struct fuzz *f, const char *op, int r)
{
	if (!r)
		return;
	f->errors++;
	TEST_ASSERT(errno == EINVAL || errno == ENOENT || errno == ENOTCONN ||
		    errno == EBUSY || errno == EEXIST || errno == EAGAIN,
		    "%s: unexpected errno %d", op, errno);
}

static uint64_t random_gpa(unsigned int *seed)
{
	switch (rand_r(seed) % 8) {
	case 0:
		return B_GPA + (rand_r(seed) % (B_PAGES + 4)) * PAGE_SIZE;
	case 1:
		return rand_r(seed) % 4 ? A_GPA + rand_r(seed) % (A_PAGES * PAGE_SIZE) :
					  (uint64_t)rand_r(seed) << 20;
	default:
		return A_GPA + (rand_r(seed) % (A_PAGES + 4)) * PAGE_SIZE - 2 * PAGE_SIZE;
	}
}

static void op_protect(struct fuzz *f, unsigned int *seed, unsigned long cmd)
{
	uint64_t size = (1 + rand_r(seed) % 64) * PAGE_SIZE;

	if (!(rand_r(seed) % 16))
		size = rand_r(seed);	/* mostly not page-aligned */
	check_errno(f, "protect/unprotect",
		    __vm_wtrack(f->vm, cmd, random_gpa(seed), size));
}

/*
 * Read what the ring has and resolve some of it, never a landed event
 * (KVM unprotected its page); or drop the ring.  A new ring's argument is
 * sometimes not 0: refused.
 */
static void op_consumer(struct fuzz *f, unsigned int *seed)
{
	struct kvm_wtrack_event ev[16];
	ssize_t n;

	if (f->ring_fd < 0) {
		unsigned long arg = rand_r(seed) % 8 ? 0 : 1 + rand_r(seed);

		f->ring_fd = __vm_ioctl(f->vm, KVM_WTRACK_RING_FD, (void *)arg);
		TEST_ASSERT(!arg || (f->ring_fd == -1 && errno == EINVAL),
			    "KVM_WTRACK_RING_FD(%#lx): %d errno %d", arg, f->ring_fd, errno);
		check_errno(f, "ring fd", f->ring_fd < 0 ? -1 : 0);
		if (f->ring_fd >= 0)
			fcntl(f->ring_fd, F_SETFL, O_NONBLOCK);
		return;
	}
	if (!(rand_r(seed) % 8)) {
		close(f->ring_fd);
		f->ring_fd = -1;
		return;
	}
	n = read(f->ring_fd, ev, sizeof(ev));
	for (ssize_t i = 0; i < n / (ssize_t)sizeof(ev[0]); i++) {
		check_report(ev[i].flags, ev[i].gpa, ev[i].size);
		for (int j = 0; j < ARRAY_SIZE(ev[i].reserved); j++)
			TEST_ASSERT_EQ(ev[i].reserved[j], 0);
		if (ev[i].flags & KVM_WTRACK_EVENT_LANDED)
			continue;
		if (rand_r(seed) % 4)
			check_errno(f, "resolve", __vm_wtrack(f->vm, KVM_WTRACK_UNPROTECT,
							     ev[i].gpa & ~(PAGE_SIZE - 1),
							     PAGE_SIZE));
	}
}

/* Slot B: deleted, re-created, or its dirty logging toggled. */
static void op_memslot(struct fuzz *f, unsigned int *seed)
{
	struct userspace_mem_region *b = memslot2region(f->vm, B_SLOT);
	struct kvm_userspace_memory_region2 r = b->region;

	switch (rand_r(seed) % 3) {
	case 0:
		r.memory_size = f->b_present ? 0 : B_PAGES * PAGE_SIZE;
		f->b_present = !f->b_present;
		break;
	case 1:
		if (!f->b_present)
			return;
		r.flags ^= KVM_MEM_LOG_DIRTY_PAGES;
		b->region.flags = r.flags;
		break;
	default:
		if (!f->b_present)
			return;
		r.guest_phys_addr += PAGE_SIZE * B_PAGES;	/* a move: refused */
		TEST_ASSERT(ioctl(f->vm->fd, KVM_SET_USER_MEMORY_REGION2, &r) == -1 &&
			    errno == EINVAL, "a memslot move was not refused");
		return;
	}
	TEST_ASSERT(!ioctl(f->vm->fd, KVM_SET_USER_MEMORY_REGION2, &r),
		    "KVM_SET_USER_MEMORY_REGION2: errno %d", errno);
}

/* Let everything go: every page unprotected, the ring gone, vCPUs joined. */
static void vm_finish(struct fuzz *f)
{
	uint64_t before[NR_VCPUS];
	int ms;

	/* The library deletes slot B when it frees the VM. */
	if (!f->b_present)
		vm_ioctl(f->vm, KVM_SET_USER_MEMORY_REGION2,
			 &memslot2region(f->vm, B_SLOT)->region);
	__vm_wtrack(f->vm, KVM_WTRACK_UNPROTECT, A_GPA, A_PAGES * PAGE_SIZE);
	__vm_wtrack(f->vm, KVM_WTRACK_UNPROTECT, B_GPA, B_PAGES * PAGE_SIZE);

	/* Nobody may be stuck: every vCPU makes progress now. */
	memcpy(before, f->syncs, sizeof(before));
	for (int i = 0; i < NR_VCPUS; i++)
		for (ms = 0; f->syncs[i] < before[i] + 10 && ms < TIMEOUT_MS; ms++)
			usleep(1000);
	for (int i = 0; i < NR_VCPUS; i++)
		TEST_ASSERT(f->syncs[i] >= before[i] + 10, "vCPU %d is stuck", i);

	f->stop = true;
	for (int i = 0; i < NR_VCPUS; i++) {
		WRITE_ONCE(f->vcpus[i]->run->immediate_exit, 1);
		pthread_kill(f->threads[i], SIGUSR1);
		pthread_join(f->threads[i], NULL);
	}
	if (f->ring_fd >= 0)
		close(f->ring_fd);
	kvm_vm_free(f->vm);
}

static long env_long(const char *name, long def)
{
	const char *v = getenv(name);

	return v ? strtol(v, NULL, 0) : def;
}

FIXTURE(fuzz) {
};

FIXTURE_SETUP(fuzz)
{
}

FIXTURE_TEARDOWN(fuzz)
{
}

/* Under the debug kernel everything is slower: a generous timeout. */
TEST_F_TIMEOUT(fuzz, random_sequences, 120)
{
	unsigned int seed = env_long("WTRACK_FUZZ_SEED", time(NULL));
	time_t end = time(NULL) + env_long("WTRACK_FUZZ_SECONDS", 20);
	uint64_t ops = 0, errors = 0, vms = 0;
	struct fuzz f;

	TEST_REQUIRE((kvm_check_cap(KVM_CAP_X86_WRITE_TRACK) &
		      (KVM_WTRACK_ENABLE_EXIT | KVM_WTRACK_ENABLE_RING)) ==
		     (KVM_WTRACK_ENABLE_EXIT | KVM_WTRACK_ENABLE_RING));
	TH_LOG("seed %u (WTRACK_FUZZ_SEED=%u reproduces the sequence)", seed, seed);
	sigaction(SIGUSR1, &(struct sigaction){ .sa_handler = noop }, NULL);

	while (time(NULL) < end) {
		vm_start(&f, &seed);
		for (int i = 0; i < OPS_PER_VM && time(NULL) < end; i++, ops++) {
			switch (rand_r(&seed) % 8) {
			case 0 ... 2:
				op_protect(&f, &seed, KVM_WTRACK_PROTECT);
				break;
			case 3 ... 4:
				op_protect(&f, &seed, KVM_WTRACK_UNPROTECT);
				break;
			case 5 ... 6:
				op_consumer(&f, &seed);
				break;
			default:
				op_memslot(&f, &seed);
				break;
			}
			if (f.ring && !(rand_r(&seed) % 64))
				usleep(1000);	/* let vCPUs pile up on the ring */
		}
		errors += f.errors;
		vm_finish(&f);
		vms++;
	}
	TH_LOG("%lu operations in %lu VMs, %lu refused with documented errnos, no finding",
	       ops, vms, errors);
}

TEST_HARNESS_MAIN
