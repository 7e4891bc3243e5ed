// SPDX-License-Identifier: GPL-2.0
/*
 * kvm-wtrack benchmark, not a test: measures in one boot, and prints as
 * ratios against baselines measured in the same run,
 *
 *  - the exit-mode round trip "guest write to a protected page -> exit ->
 *    KVM_WTRACK_UNPROTECT -> re-entry, the write lands, the next write
 *    faults", against a plain KVM_EXIT_IO round trip;
 *  - write-protecting a whole memslot with KVM_WTRACK_PROTECT, against
 *    enabling dirty logging on the same, fully mapped memslot.
 *
 * usage: wtrack_bench [-n round trips] [-m memslot MiB] [-r repetitions]
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "kvm_util.h"
#include "processor.h"
#include "wtrack_util.h"

#define DATA_GPA	0xc0000000ULL
#define DATA_SLOT	1
#define IO_PORT		0x80

static uint64_t nr_pages;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t percentile(uint64_t *v, int n, int pct)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	return v[(n - 1) * pct / 100];
}

static void guest_io_loop(void)
{
	for (;;)
		outl(IO_PORT, 0);
}

/* Touch every page (maps them writable), then write each page once. */
static void guest_write_pages(void)
{
	uint64_t i;

	for (i = 0; i < nr_pages; i++)
		*(volatile uint64_t *)(DATA_GPA + i * PAGE_SIZE) = 0;
	GUEST_SYNC(0);
	for (i = 0; i < nr_pages; i++)
		*(volatile uint64_t *)(DATA_GPA + i * PAGE_SIZE) = i;
	GUEST_DONE();
}

static struct kvm_vm *create_vm(struct kvm_vcpu **vcpu, void *guest_code,
				uint64_t pages)
{
	struct kvm_vm *vm = vm_create_with_one_vcpu(vcpu, guest_code);

	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, DATA_GPA,
				    DATA_SLOT, pages, 0);
	virt_map(vm, DATA_GPA, DATA_GPA, pages);
	nr_pages = pages;
	sync_global_to_guest(vm, nr_pages);
	return vm;
}

/* Exit-to-exit times of a guest that only does OUT: the floor. */
static void bench_io(uint64_t *t, int n)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm = create_vm(&vcpu, guest_io_loop, 1);
	uint64_t last;
	int i;

	vcpu_run(vcpu);
	last = now_ns();
	for (i = 0; i < n; i++) {
		vcpu_run(vcpu);
		TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
		t[i] = now_ns() - last;
		last = now_ns();
	}
	kvm_vm_free(vm);
}

/* Exit-to-exit times when each exit is a protected write to resolve. */
static void bench_wtrack_exit(uint64_t *t, int n)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm = create_vm(&vcpu, guest_write_pages, n + 1);
	uint64_t gpa, last;
	int i;

	vm_enable_wtrack(vm, KVM_WTRACK_ENABLE_EXIT);
	vcpu_run_to_ucall(vcpu, UCALL_SYNC);
	vm_wtrack_protect(vm, DATA_GPA, (n + 1) * PAGE_SIZE);

	vcpu_run_to_wtrack_exit(vcpu, DATA_GPA);
	last = now_ns();
	for (i = 0, gpa = DATA_GPA; i < n; i++, gpa += PAGE_SIZE) {
		vm_wtrack_unprotect(vm, gpa, PAGE_SIZE);
		vcpu_run_to_wtrack_exit(vcpu, gpa + PAGE_SIZE);
		t[i] = now_ns() - last;
		last = now_ns();
	}
	kvm_vm_free(vm);
}

/* Time one bulk write-protect of a fully mapped memslot of @pages. */
static uint64_t bench_bulk(uint64_t pages, bool wtrack)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm = create_vm(&vcpu, guest_write_pages, pages);
	uint64_t t0, t;

	if (wtrack)
		vm_enable_wtrack(vm, KVM_WTRACK_ENABLE_EXIT);
	vcpu_run_to_ucall(vcpu, UCALL_SYNC);

	t0 = now_ns();
	if (wtrack)
		vm_wtrack_protect(vm, DATA_GPA, pages * PAGE_SIZE);
	else
		vm_mem_region_set_flags(vm, DATA_SLOT, KVM_MEM_LOG_DIRTY_PAGES);
	t = now_ns() - t0;

	kvm_vm_free(vm);
	return t;
}

static void print_row(const char *what, double p50_us, double p99_us,
		      double ratio, const char *goal)
{
	printf("%-44s %10.1f %10.1f %8.2f  %s\n", what, p50_us, p99_us, ratio, goal);
}

int main(int argc, char *argv[])
{
	int n = 2000, mib = 256, reps = 5, opt, i;
	uint64_t *io, *wt, bulk_dirty[16], bulk_wt[16];
	double io50, io99, wt50, wt99, d50, w50;

	while ((opt = getopt(argc, argv, "n:m:r:")) != -1) {
		switch (opt) {
		case 'n': n = atoi(optarg); break;
		case 'm': mib = atoi(optarg); break;
		case 'r': reps = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: %s [-n round trips] [-m MiB] [-r repetitions]\n", argv[0]);
			return 2;
		}
	}
	TEST_REQUIRE(kvm_check_cap(KVM_CAP_X86_WRITE_TRACK) & KVM_WTRACK_ENABLE_EXIT);
	TEST_ASSERT(n > 0 && mib > 0 && reps > 0 && reps <= 16, "bad arguments");

	io = calloc(n, sizeof(*io));
	wt = calloc(n, sizeof(*wt));
	TEST_ASSERT(io && wt, "out of memory");

	/* All in one process and one boot, baselines first. */
	bench_io(io, n);
	bench_wtrack_exit(wt, n);
	for (i = 0; i < reps; i++) {
		bulk_dirty[i] = bench_bulk((uint64_t)mib << 8, false);
		bulk_wt[i] = bench_bulk((uint64_t)mib << 8, true);
	}

	io50 = percentile(io, n, 50) / 1e3;
	io99 = percentile(io, n, 99) / 1e3;
	wt50 = percentile(wt, n, 50) / 1e3;
	wt99 = percentile(wt, n, 99) / 1e3;
	d50 = percentile(bulk_dirty, reps, 50) / 1e3;
	w50 = percentile(bulk_wt, reps, 50) / 1e3;

	printf("kvm-wtrack benchmark: %d round trips, %d MiB memslot, %d repetitions\n",
	       n, mib, reps);
	printf("%-44s %10s %10s %8s  %s\n", "", "p50 us", "p99 us", "ratio", "goal");
	print_row("KVM_EXIT_IO round trip (baseline)", io50, io99, 1.0, "");
	print_row("write-tracking exit round trip", wt50, wt99, wt50 / io50, "<= 1.30");
	print_row("enable dirty logging on the memslot (baseline)", d50,
		  percentile(bulk_dirty, reps, 99) / 1e3, 1.0, "");
	print_row("KVM_WTRACK_PROTECT of the whole memslot", w50,
		  percentile(bulk_wt, reps, 99) / 1e3, w50 / d50, "<= 1.50");

	free(io);
	free(wt);
	return 0;
}
