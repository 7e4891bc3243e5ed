// SPDX-License-Identifier: GPL-2.0
/*
 * The lazy snapshot demo: a VM whose vCPUs write memory as fast as they
 * can is snapshotted while it runs, restored into a fresh VM that must
 * pass the guest's own checksums, and compared with the same snapshot
 * taken with userfaultfd write-protect (QEMU background snapshot's
 * mechanism) and stop-the-world.
 *
 *   wtsnap-demo [-v vcpus] [-m MiB] [-b ring|exit|uffd|stop] [-o file]
 *               [-c] [-n runs] [-L MiB] [-p pairs] [-B] [-W MiB:N]
 *               [-r MiB/s] [-q]
 *
 * The vCPUs write random pages of all their memory alike, or with
 * -W MiB:N a working set: each writes MiB of its memory, and one write in
 * N goes anywhere in it (-W twice: two such workloads).  -c runs every
 * backend on a fresh VM each and prints a table, for -W's working sets
 * and then all pages alike.  -L adds two ring snapshots back to back, of
 * a VM of -m MiB and of one with that much memory, to compare their
 * pauses.  -n repeats each and keeps the run whose lost write rate, or
 * pause ratio, is the median: software emulation makes one run noisy;
 * -p sets how many pairs -L takes instead (a pause of a few milliseconds
 * varies by half).  -r limits the background copy's bandwidth (a copier
 * running flat out takes CPU time from the guest when the two share
 * CPUs).  -B has the vCPUs receive VMware backdoor messages too (REP INSB
 * from port 0x5659), and pauses them inside one (Documentation/vmware.rst).
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
	uint64_t max_mib_s;		/* -r: the copiers' limit, MiB/s */
	unsigned int runs;		/* -n: of each compared snapshot */
	unsigned int pairs;		/* -p: of -L's snapshots */
	int backend;
	bool compare;
	bool quiet;
	bool backdoor;
	const char *path;
};

/* What the guest writes: snapvm_config's hot_pages and cold_every. */
struct workload {
	char name[24];
	uint32_t hot_pages, cold_every;
};

struct result {
	int backend;
	const struct workload *load;
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
		     const struct opts *o, uint64_t max_mib_s)
{
	struct wtsnap_params p = {
		.backend = res->backend, .max_bandwidth = max_mib_s << 20,
	};
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

	printf("  %s, %s, %lu MiB: paused %.2f ms (state %.2f ms, write-protect %.2f ms),"
	       " snapshot %.1f ms, %lu MiB written\n"
	       "    pages: %lu by the copier, %lu before a guest write, %lu in the pause;"
	       " %lu write events\n"
	       "    guest writes/s: %.0f before, %.0f during, %.0f after\n",
	       backend_names[res->backend], res->load->name, res->mem_mib, s->pause_ns / 1e6,
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

#define MAX_RUNS	9
#define MAX_SETS	2		/* -W's working sets */

/* run()'s flags */
#define RUN_RESTORE	(1U << 0)	/* restore the snapshot and check it */
#define RUN_LIMITED	(1U << 1)	/* copy under -r's limit */

static void run(const struct opts *o, const struct workload *load, int backend,
		uint64_t mem_mib, unsigned int flags, struct result *res)
{
	struct snapvm_config cfg = {
		.nr_vcpus = o->nr_vcpus, .mem_mib = mem_mib, .pvclock = true,
		.backdoor = o->backdoor, .hot_pages = load->hot_pages,
		.cold_every = load->cold_every,
	};
	struct snapvm *v = snapvm_create(&cfg);
	int fd = open_file(o->path);

	*res = (struct result){ .backend = backend, .load = load, .mem_mib = mem_mib };
	snapvm_start(v);
	snapvm_wait_checks(v, 1);
	write_rate(v, 0.5);		/* warming up: TCG translates the code */
	res->rate_before = write_rate(v, 1);
	snapshot(v, res, fd, o, flags & RUN_LIMITED ? o->max_mib_s : 0);
	if (o->backdoor)
		printf("    vCPUs paused inside a VMware backdoor message so far: %lu\n",
		       snapvm_midway_pauses(v));
	res->rate_after = write_rate(v, 0.5);
	snapvm_free(v);
	print_summary(res);
	if (flags & RUN_RESTORE)
		restore(&cfg, fd, res);
	close(fd);
	unlink(o->path);
}

/* The share of the guest's undisturbed write rate the snapshot cost. */
static double lost(const struct result *r)
{
	return 1 - r->rate_during / r->rate_before;
}

/*
 * The guest's work the snapshot cost, in seconds of undisturbed running:
 * a share of the rate alone would favour a copier that goes slowly.
 */
static double lost_seconds(const struct result *r)
{
	return lost(r) * r->sum.elapsed_ns / 1e9;
}

static int cmp_lost(const void *a, const void *b)
{
	double x = lost(a), y = lost(b);

	return x < y ? -1 : x > y;
}

/* -n runs of one backend on fresh VMs: the median one, by lost share. */
static struct result compare_runs(const struct opts *o, const struct workload *load,
				  int backend)
{
	struct result runs[MAX_RUNS];

	for (unsigned int i = 0; i < o->runs; i++)
		run(o, load, backend, o->mem_mib,
		    RUN_LIMITED | (i ? 0 : RUN_RESTORE), &runs[i]);
	qsort(runs, o->runs, sizeof(runs[0]), cmp_lost);
	return runs[o->runs / 2];
}

static double pause_ratio(const struct result pair[2])
{
	return (double)pair[1].sum.pause_ns / pair[0].sum.pause_ns;
}

static int cmp_pause_ratio(const void *a, const void *b)
{
	double x = pause_ratio(a), y = pause_ratio(b);

	return x < y ? -1 : x > y;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The median pause of the pairs' snapshots of one size (@which: 0 or 1). */
static double median_pause_ms(struct result pairs[][2], unsigned int n,
			      unsigned int which)
{
	uint64_t ns[MAX_RUNS];

	for (unsigned int i = 0; i < n; i++)
		ns[i] = pairs[i][which].sum.pause_ns;
	qsort(ns, n, sizeof(ns[0]), cmp_u64);
	return ns[n / 2] / 1e6;
}

/*
 * Pause against size: -n pairs of ring snapshots, of -m MiB and of -L
 * MiB back to back, both warm; the pair whose ratio is the median.  All
 * pages alike: the guest waits for most of them, so the copy ends sooner.
 * Prints the pairs' ratios and each size's median pause too: a pause of
 * a few milliseconds varies by half under software emulation.
 */
static void compare_pauses(const struct opts *o, const struct workload *load,
			   struct result median[2])
{
	struct result pairs[MAX_RUNS][2];
	unsigned int n = o->pairs;
	double small, large;

	for (unsigned int i = 0; i < n; i++) {
		run(o, load, WTSNAP_BACKEND_RING, o->mem_mib, 0, &pairs[i][0]);
		run(o, load, WTSNAP_BACKEND_RING, o->large_mib, 0, &pairs[i][1]);
	}
	qsort(pairs, n, sizeof(pairs[0]), cmp_pause_ratio);
	memcpy(median, pairs[n / 2], sizeof(pairs[0]));
	small = median_pause_ms(pairs, n, 0);
	large = median_pause_ms(pairs, n, 1);
	printf("  pause pairs, %lu MiB vs %lu MiB: %.2fx to %.2fx; median pauses %.2f ms vs %.2f ms: %.2fx\n",
	       o->large_mib, o->mem_mib, pause_ratio(pairs[0]),
	       pause_ratio(pairs[n - 1]), large, small, large / small);
}

static const struct result *find(const struct result *r, unsigned int n,
				  const struct workload *load, int backend)
{
	for (unsigned int i = 0; i < n; i++)
		if (r[i].load == load && r[i].backend == backend)
			return &r[i];
	return NULL;
}

static void print_table(const struct result *r, unsigned int n)
{
	printf("\n  %-16s %-16s %5s %9s %12s %15s %7s %7s\n", "backend", "workload",
	       "MiB", "pause ms", "snapshot ms", "guest writes/s", "lost", "lost s");
	for (unsigned int i = 0; i < n; i++)
		printf("  %-16s %-16s %5lu %9.2f %12.1f %15.0f %6.1f%% %7.2f\n",
		       backend_names[r[i].backend], r[i].load->name, r[i].mem_mib,
		       r[i].sum.pause_ns / 1e6, r[i].sum.elapsed_ns / 1e6,
		       r[i].rate_during, 100 * lost(&r[i]), lost_seconds(&r[i]));
	for (unsigned int i = 0; i < n; i++) {
		const struct result *ring = &r[i], *uffd;

		if (ring->backend != WTSNAP_BACKEND_RING ||
		    find(r, i, ring->load, WTSNAP_BACKEND_RING) ||
		    !(uffd = find(r, n, ring->load, WTSNAP_BACKEND_UFFD)))
			continue;
		printf("\n  guest throughput lost, ring vs userfaultfd-wp, %s: %.2fx of the rate,"
		       " %.2fx of the work", ring->load->name, lost(ring) / lost(uffd),
		       lost_seconds(ring) / lost_seconds(uffd));
	}
	printf("\n");
}

static int parse_backend(const char *s)
{
	for (int i = 0; i < (int)ARRAY_SIZE(backend_opts); i++)
		if (!strcmp(s, backend_opts[i]))
			return i;
	TEST_FAIL("unknown backend %s (ring, exit, uffd, stop)", s);
	return -1;
}

/* -W MiB:N: each vCPU writes MiB of its memory, and 1 write in N anywhere. */
static void parse_working_set(const char *arg, struct workload *load)
{
	char *end;
	uint64_t mib = strtoull(arg, &end, 0);

	if (*end != ':' || !mib || mib > 1024 ||
	    !(load->cold_every = strtoul(end + 1, &end, 0)) || *end)
		TEST_FAIL("-W wants MiB:N, e.g. 4:1000");
	load->hot_pages = (mib << 20) / 4096;
	snprintf(load->name, sizeof(load->name), "%lu MiB, 1/%u", mib,
		 load->cold_every);
}

static void usage(const char *prog)
{
	fprintf(stderr, "usage: %s [-v vcpus] [-m MiB] [-b ring|exit|uffd|stop] [-o file] [-c] [-n runs] [-L MiB] [-p pairs] [-B] [-W MiB:N] [-r MiB/s] [-q]\n",
		prog);
	exit(2);
}

int main(int argc, char **argv)
{
	struct opts o = {
		.nr_vcpus = 2, .mem_mib = 128, .runs = 1, .path = "/tmp/wtsnap-demo.snap",
	};
	/* -W's working sets, then all pages alike. */
	struct workload loads[MAX_SETS + 1] = { 0 };
	struct result res[ARRAY_SIZE(loads) * ARRAY_SIZE(compare_order) + 2];
	unsigned int n = 0, nr_sets = 0, end;
	int c;

	while ((c = getopt(argc, argv, "v:m:b:o:cn:L:p:BW:r:q")) != -1) {
		switch (c) {
		case 'v': o.nr_vcpus = atoi(optarg); break;
		case 'm': o.mem_mib = strtoull(optarg, NULL, 0); break;
		case 'b': o.backend = parse_backend(optarg); break;
		case 'o': o.path = optarg; break;
		case 'c': o.compare = true; break;
		case 'L': o.large_mib = strtoull(optarg, NULL, 0); break;
		case 'q': o.quiet = true; break;
		case 'B': o.backdoor = true; break;
		case 'n': o.runs = atoi(optarg); break;
		case 'p': o.pairs = atoi(optarg); break;
		case 'r': o.max_mib_s = strtoull(optarg, NULL, 0); break;
		case 'W':
			if (nr_sets == MAX_SETS)
				TEST_FAIL("-W: at most %d working sets", MAX_SETS);
			parse_working_set(optarg, &loads[nr_sets++]);
			break;
		default: usage(argv[0]);
		}
	}
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_X86_WRITE_TRACK));
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!o.runs || o.runs > MAX_RUNS)
		TEST_FAIL("-n: 1 to %d runs", MAX_RUNS);
	if (!o.pairs)
		o.pairs = o.runs;
	if (o.pairs > MAX_RUNS)
		TEST_FAIL("-p: 1 to %d pairs", MAX_RUNS);
	strcpy(loads[nr_sets].name, "all pages");
	end = o.compare ? nr_sets + 1 : 1;
	printf("lazy snapshot of a running VM: %u vCPUs writing %lu MiB\n",
	       o.nr_vcpus, o.mem_mib);
	for (unsigned int l = 0; l < nr_sets; l++)
		printf("  workload \"%s\": each vCPU writes %u MiB of its memory, 1 write in %u anywhere\n",
		       loads[l].name, loads[l].hot_pages >> 8, loads[l].cold_every);
	if (o.max_mib_s)
		printf("  background copy limited to %lu MiB/s\n", o.max_mib_s);
	for (unsigned int l = 0; l < end; l++)
		for (size_t i = 0; i < ARRAY_SIZE(compare_order); i++)
			if (o.compare || compare_order[i] == o.backend)
				res[n++] = compare_runs(&o, &loads[l], compare_order[i]);
	if (o.large_mib) {
		compare_pauses(&o, &loads[nr_sets], &res[n]);
		n += 2;
	}
	if (n > 1)
		print_table(res, n);
	if (n > 1 && o.runs > 1)
		printf("  (each row: the median of %u runs, by lost share)\n", o.runs);
	if (o.large_mib)
		printf("\n  pause, %lu MiB vs %lu MiB (ring, back to back): %.2fx, the median of %u pairs (the last two rows)\n",
		       o.large_mib, o.mem_mib, pause_ratio(&res[n - 2]), o.pairs);
	return 0;
}
