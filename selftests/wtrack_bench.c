// SPDX-License-Identifier: GPL-2.0
/*
 * kvm-wtrack benchmark, not a test: measures in one boot, and prints as
 * ratios against baselines measured in the same run,
 *
 *  - the exit-mode round trip "guest write to a protected page -> exit ->
 *    KVM_WTRACK_UNPROTECT -> re-entry, the write lands, the next write
 *    faults", against a plain KVM_EXIT_IO round trip;
 *  - write-protecting a whole memslot with KVM_WTRACK_PROTECT, against
 *    enabling dirty logging on the same, fully mapped memslot;
 *  - copy-before-write events, at 1 and 2 vCPUs that each write their own
 *    pages once: events per second and the guest-measured p50/p99 time of
 *    one write, with the page copied and resolved by exit mode, ring mode
 *    (a blocking, a busy-polling and an SQPOLL consumer thread) and
 *    userfaultfd write-protect on the same memory (the mechanism QEMU's
 *    background snapshot uses), against the same guest doing OUT instead
 *    (the KVM_EXIT_IO floor).
 *
 * usage: wtrack_bench [-n round trips] [-m memslot MiB] [-r repetitions]
 *                     [-e events per vCPU]
 */
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <wtrack.h>

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

/*
 * Copy-before-write events.  Each vCPU first touches its pages (they get
 * mapped writable), syncs, then writes each page once, timing every write
 * (or OUT, for the floor) with RDTSC into an unprotected log.
 */
#define LOG_GPA		0x100000000ULL
#define LOG_SLOT	2
#define EV_MAX_VCPUS	2
#define EV_BATCH	64

enum ev_mode {
	EV_IO, EV_EXIT, EV_RING, EV_RING_BUSY, EV_RING_VPOLL, EV_RING_SQPOLL, EV_UFFD,
	EV_NR_MODES
};

static const char * const ev_mode_name[EV_NR_MODES] = {
	[EV_IO]		 = "KVM_EXIT_IO round trip (floor)",
	[EV_EXIT]	 = "exit mode",
	[EV_RING]	 = "ring mode, blocking consumer",
	[EV_RING_BUSY]	 = "ring mode, busy-polling consumer",
	[EV_RING_VPOLL]	 = "  ... and vCPUs poll 100 us",
	[EV_RING_SQPOLL] = "ring mode, busy-polling + SQPOLL",
	[EV_UFFD]	 = "userfaultfd write-protect",
};

static void guest_events(uint64_t base, uint64_t npages, uint64_t log, uint64_t io)
{
	uint64_t i, t0;

	for (i = 0; i < npages; i++)
		*(volatile uint64_t *)(base + i * PAGE_SIZE) = 0;
	GUEST_SYNC(0);
	for (i = 0; i < npages; i++) {
		t0 = rdtsc();
		if (io)
			outl(IO_PORT, 0);
		else
			*(volatile uint64_t *)(base + i * PAGE_SIZE) = i;
		((volatile uint64_t *)log)[i] = rdtsc() - t0;
	}
	GUEST_DONE();
}

struct ev_bench;

struct ev_vcpu {
	struct ev_bench *b;
	struct kvm_vcpu *vcpu;
	pthread_t thread;
};

struct ev_bench {
	enum ev_mode mode;
	int nr_vcpus;
	uint64_t npages;		/* per vCPU */
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpus[EV_MAX_VCPUS];
	struct ev_vcpu threads[EV_MAX_VCPUS];
	pthread_barrier_t start;
	struct wtrack *wt;
	int uffd, stop_fd;
	char *copy;			/* the snapshot's pages */
	volatile bool stop, stopped;
};

static uint64_t ev_gpa(struct ev_bench *b, int vcpu, uint64_t i)
{
	return DATA_GPA + (vcpu * b->npages + i) * PAGE_SIZE;
}

/* The copy a lazy snapshot makes before it lets the write land. */
static void ev_copy_page(struct ev_bench *b, uint64_t gpa)
{
	gpa &= ~(uint64_t)(PAGE_SIZE - 1);
	memcpy(b->copy + (gpa - DATA_GPA), addr_gpa2hva(b->vm, gpa), PAGE_SIZE);
}

static void ev_run_to_done(struct ev_bench *b, struct kvm_vcpu *vcpu)
{
	struct kvm_wtrack_event ev;
	struct ucall uc;

	for (;;) {
		int r = __vcpu_run(vcpu);

		/* A stopped write fails with EFAULT; a landed one exits. */
		if ((!r || errno == EFAULT) &&
		    wtrack_exit_event(vcpu->run, vcpu->id, &ev) == 1) {
			if (ev.flags & KVM_WTRACK_EVENT_LANDED)
				continue;	/* already unprotected */
			ev_copy_page(b, ev.gpa);
			TEST_ASSERT(!wtrack_resolve(b->wt, ev.gpa, ev.size), "resolve");
			continue;
		}
		TEST_ASSERT(!r, "KVM_RUN: %d errno %d", r, errno);
		if (vcpu->run->exit_reason == KVM_EXIT_IO && vcpu->run->io.port == IO_PORT)
			continue;
		TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
		if (get_ucall(vcpu, &uc) == UCALL_ABORT)
			REPORT_GUEST_ASSERT(uc);
		TEST_ASSERT_EQ(uc.cmd, UCALL_DONE);
		return;
	}
}

static void *ev_vcpu_thread(void *arg)
{
	struct ev_vcpu *v = arg;

	vcpu_run_to_ucall(v->vcpu, UCALL_SYNC);
	pthread_barrier_wait(&v->b->start);	/* memory is protected */
	pthread_barrier_wait(&v->b->start);	/* the clock runs */
	ev_run_to_done(v->b, v->vcpu);
	return NULL;
}

static void *ev_ring_consumer(void *arg)
{
	struct ev_bench *b = arg;
	struct kvm_wtrack_event ev[EV_BATCH];

	while (!b->stop) {
		int n = wtrack_wait(b->wt, ev, EV_BATCH);

		if (n == -EINTR)
			continue;
		TEST_ASSERT(n > 0, "wtrack_wait: %d", n);
		for (int i = 0; i < n; i++) {
			if (ev[i].flags & KVM_WTRACK_EVENT_LANDED)
				continue;
			ev_copy_page(b, ev[i].gpa);
			TEST_ASSERT(!wtrack_resolve(b->wt, ev[i].gpa, ev[i].size), "resolve");
		}
	}
	b->stopped = true;
	return NULL;
}

static void ev_uffd_wp(struct ev_bench *b, uint64_t gpa, uint64_t size, bool wp)
{
	struct uffdio_writeprotect w = {
		.range = { .start = (uintptr_t)addr_gpa2hva(b->vm, gpa), .len = size },
		.mode = wp ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};

	TEST_ASSERT(!ioctl(b->uffd, UFFDIO_WRITEPROTECT, &w), "UFFDIO_WRITEPROTECT");
}

static void *ev_uffd_handler(void *arg)
{
	struct ev_bench *b = arg;
	struct pollfd fds[2] = {
		{ .fd = b->uffd, .events = POLLIN },
		{ .fd = b->stop_fd, .events = POLLIN },
	};
	struct uffd_msg msg[EV_BATCH];

	while (poll(fds, 2, -1) > 0 && !(fds[1].revents & POLLIN)) {
		ssize_t n = read(b->uffd, msg, sizeof(msg));

		TEST_ASSERT(n >= 0 || errno == EAGAIN, "read(userfaultfd): errno %d", errno);
		for (int i = 0; i < n / (ssize_t)sizeof(msg[0]); i++) {
			uint64_t hva = msg[i].arg.pagefault.address & ~(uint64_t)(PAGE_SIZE - 1);
			uint64_t gpa = DATA_GPA + (hva - (uintptr_t)addr_gpa2hva(b->vm, DATA_GPA));

			TEST_ASSERT(msg[i].event == UFFD_EVENT_PAGEFAULT &&
				    (msg[i].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP),
				    "unexpected userfaultfd message");
			ev_copy_page(b, gpa);
			ev_uffd_wp(b, gpa, PAGE_SIZE, false);
		}
	}
	return NULL;
}

static void ev_uffd_setup(struct ev_bench *b)
{
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)addr_gpa2hva(b->vm, DATA_GPA),
			   .len = b->nr_vcpus * b->npages * PAGE_SIZE },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};

	/*
	 * Not UFFD_USER_MODE_ONLY: KVM's faults on the memory are the point.
	 * O_NONBLOCK: without it, poll() on a userfaultfd reports POLLERR.
	 */
	b->uffd = syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	TEST_ASSERT(b->uffd >= 0, "userfaultfd: errno %d", errno);
	TEST_ASSERT(!ioctl(b->uffd, UFFDIO_API, &api), "UFFDIO_API");
	TEST_ASSERT(!ioctl(b->uffd, UFFDIO_REGISTER, &reg), "UFFDIO_REGISTER");
	b->stop_fd = eventfd(0, EFD_CLOEXEC);
}

static void ev_open_wtrack(struct ev_bench *b)
{
	struct wtrack_params p = { .mode = WTRACK_MODE_RING };
	int r;

	switch (b->mode) {
	case EV_EXIT:
		p.mode = WTRACK_MODE_EXIT;
		break;
	case EV_RING_BUSY:
	case EV_RING_VPOLL:
		p.flags = WTRACK_F_BUSY_POLL;
		break;
	case EV_RING_SQPOLL:
		p.flags = WTRACK_F_BUSY_POLL | WTRACK_F_SQPOLL;
		break;
	default:
		break;
	}
	r = wtrack_open(b->vm->fd, &p, &b->wt);
	TEST_ASSERT(!r, "wtrack_open: %d", r);
}

/* Protect (or write-protect with userfaultfd) and start the consumer. */
static pthread_t ev_start_tracking(struct ev_bench *b)
{
	uint64_t size = b->nr_vcpus * b->npages * PAGE_SIZE;
	pthread_t consumer = 0;

	switch (b->mode) {
	case EV_IO:
		break;
	case EV_UFFD:
		ev_uffd_wp(b, DATA_GPA, size, true);
		pthread_create(&consumer, NULL, ev_uffd_handler, b);
		break;
	default:
		TEST_ASSERT(!wtrack_protect(b->wt, DATA_GPA, size), "protect");
		if (b->mode != EV_EXIT)
			pthread_create(&consumer, NULL, ev_ring_consumer, b);
	}
	return consumer;
}

static void ev_stop_tracking(struct ev_bench *b, pthread_t consumer)
{
	b->stop = true;
	if (b->mode == EV_UFFD)
		TEST_ASSERT(eventfd_write(b->stop_fd, 1) == 0, "eventfd");
	else
		/* Out of wtrack_wait(): a signal that lands while it spins is lost. */
		while (consumer && !b->stopped) {
			pthread_kill(consumer, SIGUSR1);
			usleep(1000);
		}
	if (consumer)
		pthread_join(consumer, NULL);
	wtrack_close(b->wt);
	if (b->mode == EV_UFFD) {
		close(b->uffd);
		close(b->stop_fd);
	}
}

static void ev_noop(int sig)
{
}

/* kvm.wtrack_poll_ns: how long a vCPU polls for its resolve first. */
static void ev_set_vcpu_poll_ns(unsigned int ns)
{
	FILE *f = fopen("/sys/module/kvm/parameters/wtrack_poll_ns", "w");

	TEST_ASSERT(f, "no kvm.wtrack_poll_ns");
	fprintf(f, "%u\n", ns);
	TEST_ASSERT(!fclose(f), "writing kvm.wtrack_poll_ns");
}

/*
 * One run: @nr_vcpus vCPUs write @npages pages each.  Fills @lat with the
 * per-write times in ns and returns the events per second.
 */
static double ev_run(enum ev_mode mode, int nr_vcpus, uint64_t npages, uint64_t *lat)
{
	struct ev_bench b = { .mode = mode, .nr_vcpus = nr_vcpus, .npages = npages };
	uint64_t total = nr_vcpus * npages, log_pages, t0, t, khz;
	pthread_t consumer;
	int i;

	log_pages = DIV_ROUND_UP(total * sizeof(uint64_t), PAGE_SIZE);
	b.vm = vm_create_with_vcpus(nr_vcpus, guest_events, b.vcpus);
	vm_userspace_mem_region_add(b.vm, VM_MEM_SRC_ANONYMOUS, DATA_GPA, DATA_SLOT, total, 0);
	virt_map(b.vm, DATA_GPA, DATA_GPA, total);
	vm_userspace_mem_region_add(b.vm, VM_MEM_SRC_ANONYMOUS, LOG_GPA, LOG_SLOT, log_pages, 0);
	virt_map(b.vm, LOG_GPA, LOG_GPA, log_pages);
	b.copy = malloc(total * PAGE_SIZE);
	TEST_ASSERT(b.copy, "out of memory");

	if (mode == EV_UFFD)
		ev_uffd_setup(&b);
	else if (mode != EV_IO)
		ev_open_wtrack(&b);
	ev_set_vcpu_poll_ns(mode == EV_RING_VPOLL ? 100000 : 0);

	pthread_barrier_init(&b.start, NULL, nr_vcpus + 1);
	for (i = 0; i < nr_vcpus; i++) {
		vcpu_args_set(b.vcpus[i], 4, ev_gpa(&b, i, 0), npages,
			      LOG_GPA + i * npages * sizeof(uint64_t), mode == EV_IO);
		b.threads[i] = (struct ev_vcpu){ .b = &b, .vcpu = b.vcpus[i] };
		pthread_create(&b.threads[i].thread, NULL, ev_vcpu_thread, &b.threads[i]);
	}
	pthread_barrier_wait(&b.start);		/* every vCPU touched its pages */
	consumer = ev_start_tracking(&b);
	pthread_barrier_wait(&b.start);
	t0 = now_ns();
	for (i = 0; i < nr_vcpus; i++)
		pthread_join(b.threads[i].thread, NULL);
	t = now_ns() - t0;
	ev_stop_tracking(&b, consumer);

	khz = __vcpu_ioctl(b.vcpus[0], KVM_GET_TSC_KHZ, NULL);
	TEST_ASSERT((int64_t)khz > 0, "KVM_GET_TSC_KHZ");
	for (i = 0; i < total; i++)
		lat[i] = ((uint64_t *)addr_gpa2hva(b.vm, LOG_GPA))[i] * 1000000 / khz;

	free(b.copy);
	kvm_vm_free(b.vm);
	return total * 1e9 / t;
}

static void bench_events(int npages)
{
	struct sigaction sa = { .sa_handler = ev_noop };
	double rate[EV_NR_MODES], p50[EV_NR_MODES], p99[EV_NR_MODES];
	uint64_t *lat = calloc(EV_MAX_VCPUS * npages, sizeof(*lat));
	int mode, v;

	TEST_ASSERT(lat, "out of memory");
	sigaction(SIGUSR1, &sa, NULL);

	printf("\ncopy-before-write events: %d pages per vCPU, each written once\n", npages);
	printf("%-34s %5s %10s %8s %8s %9s %9s\n", "", "vCPUs", "events/s", "p50 us",
	       "p99 us", "x uffd-wp", "p50/floor");
	for (v = 1; v <= EV_MAX_VCPUS; v++) {
		for (mode = 0; mode < EV_NR_MODES; mode++) {
			fprintf(stderr, "# %s, %d vCPUs...\n", ev_mode_name[mode], v);
			rate[mode] = ev_run(mode, v, npages, lat);
			p50[mode] = percentile(lat, v * npages, 50) / 1e3;
			p99[mode] = percentile(lat, v * npages, 99) / 1e3;
		}
		for (mode = 0; mode < EV_NR_MODES; mode++)
			printf("%-34s %5d %10.0f %8.1f %8.1f %9.2f %9.2f\n",
			       ev_mode_name[mode], v, rate[mode], p50[mode], p99[mode],
			       rate[mode] / rate[EV_UFFD], p50[mode] / p50[EV_IO]);
	}
	printf("goals at 2 vCPUs, ring mode: >= 5.00 x uffd-wp events/s, p50/floor <= 1.00\n");
	free(lat);
}

int main(int argc, char *argv[])
{
	int n = 2000, mib = 256, reps = 5, events = 2000, opt, i;
	uint64_t *io, *wt, bulk_dirty[16], bulk_wt[16];
	double io50, io99, wt50, wt99, d50, w50;

	while ((opt = getopt(argc, argv, "n:m:r:e:")) != -1) {
		switch (opt) {
		case 'n': n = atoi(optarg); break;
		case 'm': mib = atoi(optarg); break;
		case 'r': reps = atoi(optarg); break;
		case 'e': events = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: %s [-n round trips] [-m MiB] [-r repetitions] [-e events per vCPU]\n",
				argv[0]);
			return 2;
		}
	}
	TEST_REQUIRE(kvm_check_cap(KVM_CAP_X86_WRITE_TRACK) & KVM_WTRACK_ENABLE_EXIT);
	/* Progress shows up in the console log as it happens. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	TEST_ASSERT(n > 0 && mib > 0 && reps > 0 && reps <= 16 && events > 0,
		    "bad arguments");

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

	bench_events(events);
	return 0;
}
