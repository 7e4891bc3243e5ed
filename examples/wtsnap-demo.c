// SPDX-License-Identifier: GPL-2.0
/*
 * The lazy snapshot demo: a VM whose vCPUs write memory as fast as they
 * can is snapshotted while it runs, restored into a fresh VM that must
 * pass the guest's own checksums, and compared with the same snapshot
 * taken with userfaultfd write-protect (QEMU background snapshot's
 * mechanism) and stop-the-world.
 *
 *   wtsnap-demo [-v vcpus] [-m MiB] [-b ring|exit|uffd|stop] [-o file]
 *               [-c] [-L MiB] [-B] [-q]
 *
 * -c runs every backend on a fresh VM each and prints a table; -L adds
 * two ring snapshots back to back, of a VM of -m MiB and of one with
 * that much memory, to compare their pauses.  -B has the vCPUs receive
 * VMware backdoor messages too (REP INSB from port 0x5659), and pauses
 * them inside one (Documentation/vmware.rst).
 */
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kvm_util.h"
#include "snapvm.h"

struct opts {
	unsigned int nr_vcpus;
	uint64_t mem_mib;
	uint64_t large_mib;
	int backend;
	bool compare;
	bool quiet;
	bool backdoor;
	const char *path;
};

struct result {
	int backend;
	uint64_t mem_mib;
	struct wtsnap_progress sum;
	double rate_before;	/* guest writes per second, undisturbed */
	double rate_during;	/* ... from the pause to the end of the copy */
	double rate_after;	/* ... once the snapshot is done */
	bool restored;
};

/* By WTSNAP_BACKEND_*: the option's name and the table's. */
static const char *const backend_opts[] = { "ring", "exit", "stop", "uffd" };
static const char *const backend_names[] = { "kvm-wtrack ring", "kvm-wtrack exit",
					     "stop-the-world", "userfaultfd-wp" };

/* The order of the comparison: ours, then the references. */
static const int compare_order[] = {
	WTSNAP_BACKEND_RING, WTSNAP_BACKEND_EXIT, WTSNAP_BACKEND_UFFD,
	WTSNAP_BACKEND_STOP,
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double write_rate(struct snapvm *v, double seconds)
{
	uint64_t w0 = snapvm_writes(v);
	double t0 = now_s();

	usleep(seconds * 1e6);
	return (snapvm_writes(v) - w0) / (now_s() - t0);
}

static void progress_bar(const struct wtsnap_progress *p, double secs)
{
	int width = 30, fill = p->nr_pages ? p->copied * width / p->nr_pages : 0;
	double mib = p->copied * (double)WTSNAP_PAGE_SIZE / (1 << 20);

	fprintf(stderr, "\r  [%.*s%*s] %3d%%  %8.1f MiB  %6.0f MiB/s  %6lu write events",
		fill, "##############################", width - fill, "",
		(int)(p->copied * 100 / (p->nr_pages ?: 1)), mib,
		secs > 0 ? mib / secs : 0.0, p->events);
}

/* Wait for the copy, drawing the bar on a terminal. */
static void watch(struct wtsnap *s, const struct opts *o)
{
	bool bar = !o->quiet && isatty(STDERR_FILENO);
	struct wtsnap_progress p;

	do {
		usleep(50000);
		wtsnap_progress(s, &p);
		if (bar)
			progress_bar(&p, p.elapsed_ns / 1e9);
	} while (!p.done && !p.error);
	if (bar)
		fputc('\n', stderr);
}

static int open_file(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	TEST_ASSERT(fd >= 0, "cannot create %s", path);
	return fd;
}

static void snapshot(struct snapvm *v, struct result *res, int fd,
		     const struct opts *o)
{
	struct wtsnap_params p = { .backend = res->backend };
	struct wtsnap_vm_region regions[SNAPVM_MAX_REGIONS];
	struct wtsnap_vm vm;
	struct wtsnap *s;
	uint64_t w0;
	double t0;
	int r;

	snapvm_describe(v, &vm, regions);
	r = wtsnap_open(&vm, &p, &s);
	TEST_ASSERT(!r, "wtsnap_open: %s", strerror(-r));
	snapvm_set_engine(v, s);
	w0 = snapvm_writes(v);
	t0 = now_s();
	r = wtsnap_start(s, fd);
	TEST_ASSERT(!r, "wtsnap_start: %s", strerror(-r));
	watch(s, o);
	r = wtsnap_finish(s, &res->sum);
	res->rate_during = (snapvm_writes(v) - w0) / (now_s() - t0);
	TEST_ASSERT(!r, "wtsnap_finish: %s (%lu writes lost)", strerror(-r),
		    res->sum.lost);
	snapvm_set_engine(v, NULL);
	wtsnap_close(s);
}

static void print_summary(const struct result *res)
{
	const struct wtsnap_progress *s = &res->sum;

	printf("  %s, %lu MiB: paused %.2f ms (state %.2f ms, write-protect %.2f ms),"
	       " snapshot %.1f ms, %lu MiB written\n"
	       "    pages: %lu by the copier, %lu before a guest write, %lu in the pause;"
	       " %lu write events\n"
	       "    guest writes/s: %.0f before, %.0f during, %.0f after\n",
	       backend_names[res->backend], res->mem_mib, s->pause_ns / 1e6,
	       s->state_ns / 1e6, s->protect_ns / 1e6, s->elapsed_ns / 1e6,
	       s->nr_pages * WTSNAP_PAGE_SIZE >> 20, s->by_copier, s->by_write,
	       s->eager, s->events, res->rate_before, res->rate_during,
	       res->rate_after);
}

/* Restore into a fresh VM and let the guest check its memory twice. */
static void restore(const struct snapvm_config *cfg, int fd, struct result *res)
{
	struct snapvm *v = snapvm_restore(cfg, fd);

	snapvm_start(v);
	snapvm_wait_checks(v, 2);
	snapvm_free(v);
	res->restored = true;
	printf("    restored into a fresh VM: the guest's checksums agree\n");
}

static void run(const struct opts *o, int backend, uint64_t mem_mib,
		bool do_restore, struct result *res)
{
	struct snapvm_config cfg = {
		.nr_vcpus = o->nr_vcpus, .mem_mib = mem_mib, .pvclock = true,
		.backdoor = o->backdoor,
	};
	struct snapvm *v = snapvm_create(&cfg);
	int fd = open_file(o->path);

	*res = (struct result){ .backend = backend, .mem_mib = mem_mib };
	snapvm_start(v);
	snapvm_wait_checks(v, 1);
	res->rate_before = write_rate(v, 0.5);
	snapshot(v, res, fd, o);
	if (o->backdoor)
		printf("    vCPUs paused inside a VMware backdoor message so far: %lu\n",
		       snapvm_midway_pauses(v));
	res->rate_after = write_rate(v, 0.5);
	snapvm_free(v);
	print_summary(res);
	if (do_restore)
		restore(&cfg, fd, res);
	close(fd);
	unlink(o->path);
}

/* The share of the guest's undisturbed write rate the snapshot cost. */
static double lost(const struct result *r)
{
	return 1 - r->rate_during / r->rate_before;
}

static void print_table(const struct result *r, unsigned int n)
{
	const struct result *ring = NULL, *uffd = NULL;

	printf("\n  %-16s %6s %10s %12s %16s %10s\n", "backend", "MiB", "pause ms",
	       "snapshot ms", "guest writes/s", "lost");
	for (unsigned int i = 0; i < n; i++) {
		printf("  %-16s %6lu %10.2f %12.1f %16.0f %9.1f%%\n",
		       backend_names[r[i].backend], r[i].mem_mib,
		       r[i].sum.pause_ns / 1e6, r[i].sum.elapsed_ns / 1e6,
		       r[i].rate_during, 100 * lost(&r[i]));
		if (r[i].backend == WTSNAP_BACKEND_RING && !ring)
			ring = &r[i];
		if (r[i].backend == WTSNAP_BACKEND_UFFD)
			uffd = &r[i];
	}
	if (ring && uffd)
		printf("\n  guest throughput lost, ring vs userfaultfd-wp: %.2fx\n",
		       lost(ring) / lost(uffd));
}

static int parse_backend(const char *s)
{
	for (int i = 0; i < (int)ARRAY_SIZE(backend_opts); i++)
		if (!strcmp(s, backend_opts[i]))
			return i;
	TEST_FAIL("unknown backend %s (ring, exit, uffd, stop)", s);
	return -1;
}

static void usage(const char *prog)
{
	fprintf(stderr, "usage: %s [-v vcpus] [-m MiB] [-b ring|exit|uffd|stop] [-o file] [-c] [-L MiB] [-B] [-q]\n",
		prog);
	exit(2);
}

int main(int argc, char **argv)
{
	struct opts o = { .nr_vcpus = 2, .mem_mib = 128, .path = "/tmp/wtsnap-demo.snap" };
	struct result res[ARRAY_SIZE(compare_order) + 2];
	unsigned int n = 0;
	int c;

	while ((c = getopt(argc, argv, "v:m:b:o:cL:Bq")) != -1) {
		switch (c) {
		case 'v': o.nr_vcpus = atoi(optarg); break;
		case 'm': o.mem_mib = strtoull(optarg, NULL, 0); break;
		case 'b': o.backend = parse_backend(optarg); break;
		case 'o': o.path = optarg; break;
		case 'c': o.compare = true; break;
		case 'L': o.large_mib = strtoull(optarg, NULL, 0); break;
		case 'q': o.quiet = true; break;
		case 'B': o.backdoor = true; break;
		default: usage(argv[0]);
		}
	}
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_X86_WRITE_TRACK));
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("lazy snapshot of a running VM: %u vCPUs writing %lu MiB\n",
	       o.nr_vcpus, o.mem_mib);
	for (size_t i = 0; i < ARRAY_SIZE(compare_order); i++) {
		if (!o.compare && compare_order[i] != o.backend)
			continue;
		run(&o, compare_order[i], o.mem_mib, true, &res[n++]);
	}
	/* Pause against size: the same backend, back to back, both warm. */
	if (o.large_mib) {
		run(&o, WTSNAP_BACKEND_RING, o.mem_mib, false, &res[n++]);
		run(&o, WTSNAP_BACKEND_RING, o.large_mib, false, &res[n++]);
	}
	if (n > 1)
		print_table(res, n);
	if (o.large_mib)
		printf("\n  pause, %lu MiB vs %lu MiB (ring, back to back): %.2fx\n",
		       o.large_mib, o.mem_mib,
		       (double)res[n - 1].sum.pause_ns / res[n - 2].sum.pause_ns);
	return 0;
}
