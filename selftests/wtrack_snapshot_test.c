// SPDX-License-Identifier: GPL-2.0
/*
 * Lazy snapshots of a running VM (libwtrack's engine, examples/snapvm.c's
 * VMM), with kvm-wtrack's two modes and, as references, userfaultfd
 * write-protect and a stop-the-world copy: the snapshot is byte for byte the memory a stop-the-world copy
 * took at the same instant, even though the guest kept writing while it
 * was copied; nothing stays protected afterwards; and a fresh VM restored
 * from it runs on with the guest's own checksums intact.  With an L2
 * guest doing the writing, the snapshot catches the vCPU in guest mode
 * and the restored vCPU goes on in L2.  With VMware backdoor messages
 * flowing (REP INSB, which KVM's emulator writes), the pause catches
 * vCPUs inside a message and the restored guest receives the rest of it
 * intact.  When the pause comes late, the pages the guest wrote since
 * kvm-wtrack protected memory are protected again in it.  The VMM's own
 * writes through the hook do not reach the snapshot either; bad input
 * gets an errno.
 */
#include <unistd.h>
#include <sys/mman.h>

#include "kvm_util.h"
#include "processor.h"
#include "kselftest_harness.h"
#include "snapvm.h"

#define MEM_MIB	32
#define RUN_SLACK	16	/* >= what a copier claims at once (lib/snapshot.c) */

FIXTURE(snapshot) {
	struct snapvm *vm;
	void *ref;		/* the stop-the-world copy, taken in the pause */
	uint64_t mem_size;
	int fd;
};

FIXTURE_VARIANT(snapshot) {
	unsigned int backend;
	unsigned int nr_vcpus;
	bool pvclock;
	bool nested;
	bool backdoor;
	bool working_set;
	unsigned int max_mib_s;		/* the copiers' bandwidth limit */
	bool late_pause;		/* the guest writes on before it */
};

#define SNAPSHOT_VARIANT(name, b, n, pv, l2, bd)			\
	FIXTURE_VARIANT_ADD(snapshot, name) {				\
		.backend = WTSNAP_BACKEND_##b, .nr_vcpus = n, .pvclock = pv, \
		.nested = l2, .backdoor = bd,				\
	}

SNAPSHOT_VARIANT(ring_1vcpu, RING, 1, false, false, false);
SNAPSHOT_VARIANT(ring_2vcpus, RING, 2, false, false, false);
SNAPSHOT_VARIANT(ring_4vcpus, RING, 4, false, false, false);
SNAPSHOT_VARIANT(exit_1vcpu, EXIT, 1, false, false, false);
SNAPSHOT_VARIANT(exit_2vcpus, EXIT, 2, false, false, false);
SNAPSHOT_VARIANT(exit_4vcpus, EXIT, 4, false, false, false);
SNAPSHOT_VARIANT(ring_2vcpus_pvclock, RING, 2, true, false, false);
SNAPSHOT_VARIANT(exit_2vcpus_pvclock, EXIT, 2, true, false, false);
SNAPSHOT_VARIANT(ring_l2, RING, 1, false, true, false);
SNAPSHOT_VARIANT(exit_l2, EXIT, 1, false, true, false);
SNAPSHOT_VARIANT(ring_2vcpus_backdoor, RING, 2, false, false, true);
SNAPSHOT_VARIANT(exit_2vcpus_backdoor, EXIT, 2, false, false, true);
SNAPSHOT_VARIANT(uffd_2vcpus, UFFD, 2, false, false, false);
SNAPSHOT_VARIANT(stop_2vcpus, STOP, 2, false, false, false);

/*
 * Most writes go to pages copied long ago, and a limited copier leaves
 * copied pages protected while it sleeps: writes to them are resolved
 * without a copy.
 */
#define LIMITED_VARIANT(name, b, ws, mib_s)				\
	FIXTURE_VARIANT_ADD(snapshot, name) {				\
		.backend = WTSNAP_BACKEND_##b, .nr_vcpus = 2,		\
		.working_set = ws, .max_mib_s = mib_s,			\
	}

LIMITED_VARIANT(ring_2vcpus_working_set, RING, true, 0);
LIMITED_VARIANT(exit_2vcpus_working_set, EXIT, true, 0);
LIMITED_VARIANT(uffd_2vcpus_working_set, UFFD, true, 0);
LIMITED_VARIANT(ring_2vcpus_limited, RING, true, 8);
LIMITED_VARIANT(uffd_2vcpus_limited, UFFD, false, 8);

/*
 * A VMM whose pause takes a while: between kvm-wtrack's protection of all
 * memory and the pause, the guest writes its working set, which the pause
 * must protect again, and it writes it again right after the pause.
 */
#define LATE_PAUSE_VARIANT(name, b)					\
	FIXTURE_VARIANT_ADD(snapshot, name) {				\
		.backend = WTSNAP_BACKEND_##b, .nr_vcpus = 2,		\
		.working_set = true, .late_pause = true,		\
	}

LATE_PAUSE_VARIANT(ring_2vcpus_late_pause, RING);
LATE_PAUSE_VARIANT(exit_2vcpus_late_pause, EXIT);

/* Enough for 2 vCPUs to write nearly all of their 64 hot pages each. */
#define LATE_WRITES	1024

static struct snapvm_config config(const FIXTURE_VARIANT(snapshot) *variant)
{
	return (struct snapvm_config) {
		.nr_vcpus = variant->nr_vcpus,
		.mem_mib = MEM_MIB,
		.pvclock = variant->pvclock,
		.nested = variant->nested,
		.backdoor = variant->backdoor,
		.hot_pages = variant->working_set ? 64 : 0,
		.cold_every = 64,
	};
}

static int late_pause(void *opaque)
{
	struct snapvm *v = opaque;
	uint64_t writes = snapvm_writes(v);

	while (snapvm_writes(v) < writes + LATE_WRITES)
		usleep(1000);
	return snapvm_pause(v);
}

static void take_reference(void *arg)
{
	FIXTURE_DATA(snapshot) *self = arg;

	snapvm_copy_mem(self->vm, self->ref);
}

FIXTURE_SETUP(snapshot)
{
	struct snapvm_config cfg = config(variant);

	TEST_REQUIRE(kvm_has_cap(KVM_CAP_X86_WRITE_TRACK));
	/* Our nested workload is SVM's: VMX ones are not written yet. */
	if (variant->nested)
		TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_SVM));
	self->vm = snapvm_create(&cfg);
	self->mem_size = snapvm_mem_size(self->vm);
	self->ref = malloc(self->mem_size);
	ASSERT_NE(NULL, self->ref);
	self->fd = memfd_create("snapshot", 0);
	ASSERT_LE(0, self->fd);
	snapvm_set_pause_hook(self->vm, take_reference, self);
	snapvm_start(self->vm);
	/* The guest runs and has checked its memory once. */
	snapvm_wait_checks(self->vm, 1);
}

FIXTURE_TEARDOWN(snapshot)
{
	snapvm_free(self->vm);
	free(self->ref);
	close(self->fd);
}

/* The vCPU is running L2 (@f: in the snapshot; else in the VM now). */
static bool in_guest_mode(const struct wtsnap_file *f, struct snapvm *vm)
{
	struct wtsnap_record rec;
	unsigned int pos = 0;
	static union {
		struct kvm_nested_state hdr;
		char buf[16384];
	} ns;

	if (f) {
		TEST_ASSERT(wtsnap_file_next_state(f, &pos, WTSNAP_STATE_NESTED, 0,
						   &rec) == 1, "no nested state");
		return ((const struct kvm_nested_state *)rec.data)->flags &
		       KVM_STATE_NESTED_GUEST_MODE;
	}
	snapvm_pause(vm);
	ns.hdr.size = sizeof(ns);
	TEST_ASSERT(!ioctl(snapvm_vcpu_fd(vm, 0), KVM_GET_NESTED_STATE, &ns),
		    "KVM_GET_NESTED_STATE");
	snapvm_resume(vm);
	return ns.hdr.flags & KVM_STATE_NESTED_GUEST_MODE;
}

/* The file holds, page for page, the reference copy. */
static void check_file(struct __test_metadata *_metadata,
		       FIXTURE_DATA(snapshot) *self,
		       const FIXTURE_VARIANT(snapshot) *variant)
{
	const struct wtsnap_region *regions;
	struct wtsnap_vm_region vr[SNAPVM_MAX_REGIONS];
	struct wtsnap_vm vm;
	struct wtsnap_file *f;
	char page[WTSNAP_PAGE_SIZE];
	const char *ref = self->ref;
	uint64_t bad = 0;

	ASSERT_EQ(0, wtsnap_file_open(self->fd, 0, &f));
	ASSERT_EQ(0, wtsnap_file_verify(f, &bad));
	snapvm_describe(self->vm, &vm, vr);
	ASSERT_EQ((int)vm.nr_regions, wtsnap_file_regions(f, &regions));
	if (variant->nested)
		ASSERT_TRUE(in_guest_mode(f, NULL));
	/* snapvm_copy_mem() goes in snapvm_describe()'s order. */
	for (unsigned int i = 0; i < vm.nr_regions; i++) {
		for (uint64_t off = 0; off < vr[i].size; off += sizeof(page)) {
			ASSERT_EQ(0, wtsnap_file_read_page(f, vr[i].gpa + off, page));
			ASSERT_EQ(0, memcmp(page, ref + off, sizeof(page)))
				TH_LOG("page %#lx differs", vr[i].gpa + off);
		}
		ref += vr[i].size;
	}
	wtsnap_file_close(f);
}

/*
 * Device emulation writes guest memory through the VMM's mapping, after
 * the hook: the snapshot must still hold the old contents (check_file()
 * compares with the copy taken in the pause).
 */
static void vmm_writes(struct __test_metadata *_metadata, struct snapvm *vm,
		       struct wtsnap *s)
{
	uint64_t gpa, size;
	char *dev = snapvm_dev_mem(vm, &gpa, &size);

	for (uint64_t off = 0; off < size; off += WTSNAP_PAGE_SIZE) {
		ASSERT_EQ(0, wtsnap_before_write(s, gpa + off, WTSNAP_PAGE_SIZE));
		memset(dev + off, 0xc3, WTSNAP_PAGE_SIZE);
	}
}

/*
 * The copier takes a run of pages only once what it copied before fits
 * the limit: the last run cannot have started sooner.
 */
static void check_limit(struct __test_metadata *_metadata,
			const struct wtsnap_progress *sum, uint64_t bandwidth)
{
	uint64_t runs_before_last = (sum->by_copier - RUN_SLACK) * WTSNAP_PAGE_SIZE;

	ASSERT_LT(RUN_SLACK, sum->by_copier);
	ASSERT_LE(runs_before_last * 1000000000 / bandwidth, sum->elapsed_ns)
		TH_LOG("%lu pages copied in %lu ms at %lu MiB/s at most",
		       sum->by_copier, sum->elapsed_ns / 1000000, bandwidth >> 20);
}

TEST_F_TIMEOUT(snapshot, copy_restore, 120)
{
	struct snapvm_config cfg = config(variant);
	struct wtsnap_params p = {
		.backend = variant->backend,
		.max_bandwidth = (uint64_t)variant->max_mib_s << 20,
	};
	struct wtsnap_vm_region regions[SNAPVM_MAX_REGIONS];
	struct wtsnap_progress sum;
	struct wtsnap_vm vm;
	struct wtsnap *s;
	struct snapvm *restored;
	uint64_t writes;

	snapvm_describe(self->vm, &vm, regions);
	if (variant->late_pause)
		vm.pause = late_pause;
	ASSERT_EQ(0, wtsnap_open(&vm, &p, &s));
	snapvm_set_engine(self->vm, s);
	ASSERT_EQ(0, wtsnap_start(s, self->fd));
	vmm_writes(_metadata, self->vm, s);
	ASSERT_EQ(0, wtsnap_finish(s, &sum));
	TH_LOG("%lu pages: %lu by the copier, %lu before guest writes, %lu before the VMM's, %lu in the pause; pause %lu us, total %lu us",
	       sum.nr_pages, sum.by_copier, sum.by_write, sum.by_vmm, sum.eager,
	       sum.pause_ns / 1000, sum.elapsed_ns / 1000);
	ASSERT_EQ(sum.nr_pages, sum.copied);
	ASSERT_EQ(0, sum.lost);
	if (variant->backend != WTSNAP_BACKEND_STOP)
		ASSERT_LT(0, sum.by_write) TH_LOG("the guest never hit a page before the copier");
	if (variant->pvclock)
		ASSERT_LE(1, sum.eager);
	/* The copiers get to the device memory last: the hook copied it. */
	if (variant->backend != WTSNAP_BACKEND_STOP)
		ASSERT_LT(0, sum.by_vmm);
	if (variant->backdoor)
		ASSERT_LT(0, snapvm_midway_pauses(self->vm))
			TH_LOG("the pause found no vCPU inside a backdoor message");
	if (variant->max_mib_s)
		check_limit(_metadata, &sum, p.max_bandwidth);

	/*
	 * Nothing stays protected: in exit mode, a page reported twice now
	 * fails the vCPU thread (one exit already on its way is fine).  The
	 * guest runs on and changes its memory.
	 */
	snapvm_set_engine(self->vm, NULL);
	snapvm_wait_checks(self->vm, 2);
	writes = snapvm_writes(self->vm);
	ASSERT_EQ(0, snapvm_stop(self->vm));
	wtsnap_close(s);
	check_file(_metadata, self, variant);

	/* A fresh VM from the file runs on and its checks pass. */
	restored = snapvm_restore(&cfg, self->fd);
	ASSERT_GT(writes, snapvm_writes(restored));
	snapvm_start(restored);
	snapvm_wait_checks(restored, 2);
	if (variant->nested)
		ASSERT_TRUE(in_guest_mode(NULL, restored));
	snapvm_free(restored);
}

static int failing_pause(void *opaque)
{
	return -EAGAIN;
}

static void bad_vm_region(struct __test_metadata *_metadata,
			  const struct wtsnap_vm *vm, uint64_t gpa, uint64_t size)
{
	struct wtsnap_vm_region r = vm->regions[0];
	struct wtsnap_vm bad = *vm;
	struct wtsnap *s;

	r.gpa = gpa;
	r.size = size;
	bad.regions = &r;
	bad.nr_regions = 1;
	ASSERT_EQ(-EINVAL, wtsnap_open(&bad, NULL, &s));
}

static void bad_params(struct __test_metadata *_metadata,
		       const struct wtsnap_vm *vm, struct wtsnap_params p)
{
	struct wtsnap *s;

	ASSERT_EQ(-EINVAL, wtsnap_open(vm, &p, &s));
}

/* Bad input gets an errno and leaves the VM as it was. */
TEST(engine_errors)
{
	struct snapvm_config cfg = { .nr_vcpus = 1, .mem_mib = 2 };
	struct wtsnap_vm_region regions[SNAPVM_MAX_REGIONS];
	struct wtsnap_params ring = { .backend = WTSNAP_BACKEND_RING };
	struct wtsnap_vm vm, bad;
	struct snapvm *v;
	struct wtsnap *s;
	int fd = memfd_create("snapshot", 0);

	TEST_REQUIRE(kvm_has_cap(KVM_CAP_X86_WRITE_TRACK));
	v = snapvm_create(&cfg);
	snapvm_describe(v, &vm, regions);

	ASSERT_EQ(-EINVAL, wtsnap_open(NULL, NULL, &s));
	bad = vm;
	bad.pause = NULL;
	ASSERT_EQ(-EINVAL, wtsnap_open(&bad, NULL, &s));
	bad_vm_region(_metadata, &vm, regions[0].gpa + 1, regions[0].size);
	bad_vm_region(_metadata, &vm, regions[0].gpa, 0);
	bad_params(_metadata, &vm, (struct wtsnap_params){ .backend = 99 });
	bad_params(_metadata, &vm, (struct wtsnap_params){ .resv[2] = 1 });
	bad_params(_metadata, &vm,
		   (struct wtsnap_params){ .copiers = WTSNAP_MAX_COPIERS + 1 });
	bad_params(_metadata, &vm, (struct wtsnap_params){ .nr_eager = 1 });

	/* A pause that fails: no snapshot, nothing protected. */
	bad = vm;
	bad.pause = failing_pause;
	ASSERT_EQ(0, wtsnap_open(&bad, &ring, &s));
	ASSERT_EQ(-ENOENT, wtsnap_finish(s, NULL));
	ASSERT_EQ(-EAGAIN, wtsnap_start(s, fd));
	ASSERT_EQ(-ENOENT, wtsnap_finish(s, NULL));
	ASSERT_EQ(-EINVAL, wtsnap_before_write(s, 0, 0));
	ASSERT_EQ(-EINVAL, wtsnap_before_write(s, -4096ULL, 8192));
	wtsnap_close(s);

	/* One snapshot at a time; the ring is the VM's again once closed. */
	snapvm_start(v);
	ASSERT_EQ(0, wtsnap_open(&vm, &ring, &s));
	ASSERT_EQ(0, wtsnap_start(s, fd));
	ASSERT_EQ(-EBUSY, wtsnap_start(s, fd));
	ASSERT_EQ(0, wtsnap_finish(s, NULL));
	ASSERT_EQ(-ENOENT, wtsnap_finish(s, NULL));
	wtsnap_close(s);

	/* KVM enables write tracking in one mode for the VM's life. */
	ASSERT_EQ(-EEXIST, wtsnap_open(&vm, &(struct wtsnap_params){
		.backend = WTSNAP_BACKEND_EXIT }, &s));
	snapvm_free(v);
	close(fd);
}

TEST_HARNESS_MAIN
