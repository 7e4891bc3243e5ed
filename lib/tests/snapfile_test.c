// SPDX-License-Identifier: GPL-2.0
/*
 * Host tests of the snapshot file (snapfile.c): round trips, pages from
 * several threads, unfinished, damaged and future files, and bad input.
 * Files are crafted and damaged with the on-disk layout of snapfmt.h.
 * Prints TAP.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/kvm.h>
#include "wtsnap.h"
#include "../snapfmt.h"
#include "tap.h"

#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#define PG		4096ULL
#define NR_VCPUS	4

/* Deliberately out of gpa order, with gaps between them. */
static const struct wtsnap_region regions[] = {
	{ .gpa = 0x100000, .size = 3 << 20, .slot = 1 },
	{ .gpa = 0x100000000ULL, .size = 16 * PG, .slot = 0x10002, .flags = KVM_MEM_READONLY },
	{ .gpa = 0, .size = 160 * PG, .slot = 0, .flags = KVM_MEM_LOG_DIRTY_PAGES },
};
#define NR_REGIONS	ARRAY_SIZE(regions)

static uint64_t nr_pages(void)
{
	uint64_t n = 0;

	for (unsigned int i = 0; i < NR_REGIONS; i++)
		n += regions[i].size / PG;
	return n;
}

/* The i-th guest page, counting through the regions in table order. */
static uint64_t page_gpa(uint64_t i)
{
	for (unsigned int r = 0;; r++) {
		if (i < regions[r].size / PG)
			return regions[r].gpa + i * PG;
		i -= regions[r].size / PG;
	}
}

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static void fill(void *buf, size_t len, uint64_t seed)
{
	uint8_t *p = buf;

	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = mix(seed + i / 8);

		memcpy(p + i, &v, len - i < 8 ? len - i : 8);
	}
}

static void fill_page(void *buf, uint64_t gpa)
{
	fill(buf, PG, gpa * 0x1000193);
}

static bool page_ok(const void *buf, uint64_t gpa)
{
	uint8_t want[PG];

	fill_page(want, gpa);
	return !memcmp(buf, want, PG);
}

static void shuffle(uint64_t *a, uint64_t n, uint64_t seed)
{
	for (uint64_t i = n - 1; i > 0; i--) {
		uint64_t j = mix(seed + i) % (i + 1), t = a[i];

		a[i] = a[j];
		a[j] = t;
	}
}

static int tmp_fd(void)
{
	const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char path[4096];
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd >= 0)
		return fd;
	snprintf(path, sizeof(path), "%s/snapfile_test.XXXXXX", dir);
	fd = mkstemp(path);
	if (fd < 0)
		abort();
	unlink(path);
	return fd;
}

/* The same file opened anew, e.g. read-only. */
static int reopen(int fd, int flags)
{
	char path[64];
	int r;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	r = open(path, flags | O_CLOEXEC);
	if (r < 0)
		abort();
	return r;
}

static uint64_t file_size(int fd)
{
	struct stat st;

	return fstat(fd, &st) ? 0 : st.st_size;
}

/* A copy of a snapshot file, to damage. */
static int clone_fd(int src)
{
	uint64_t size = file_size(src);
	static char buf[1 << 16];
	int fd = tmp_fd();

	for (uint64_t off = 0; off < size;) {
		ssize_t n = pread(src, buf, sizeof(buf), off);

		if (n <= 0 || pwrite(fd, buf, n, off) != n)
			abort();
		off += n;
	}
	return fd;
}

static void poke(int fd, uint64_t off, const void *data, size_t len)
{
	if (pwrite(fd, data, len, off) != (ssize_t)len)
		abort();
}

static void truncate_to(int fd, uint64_t size)
{
	if (ftruncate(fd, size))
		abort();
}

static void flip(int fd, uint64_t off)
{
	uint8_t b;

	if (pread(fd, &b, 1, off) != 1)
		abort();
	b ^= 0x10;
	poke(fd, off, &b, 1);
}

static struct wtsnap_hdr read_hdr(int fd)
{
	struct wtsnap_hdr h;

	if (pread(fd, &h, sizeof(h), 0) != sizeof(h))
		abort();
	return h;
}

static uint32_t crc_of(int fd, uint64_t off, uint64_t len)
{
	uint8_t *buf = malloc(len ? len : 1);
	uint32_t crc;

	if (!buf || pread(fd, buf, len, off) != (ssize_t)len)
		abort();
	crc = wtsnap_crc32c(0, buf, len);
	free(buf);
	return crc;
}

/* Write @h with a right CRC (over header_size bytes, @extra after 128). */
static void seal_header(int fd, struct wtsnap_hdr *h, const void *extra)
{
	uint8_t buf[PG] = { 0 };

	memcpy(buf, h, sizeof(*h));
	if (extra)
		memcpy(buf + sizeof(*h), extra, h->header_size - sizeof(*h));
	h->header_crc = wtsnap_header_crc(buf, h->header_size);
	memcpy(buf, h, sizeof(*h));
	poke(fd, 0, buf, h->header_size);
}

/* Seal a crafted file like a writer would: the tables' CRCs, the header. */
static void reseal(int fd, struct wtsnap_hdr *h, const void *extra)
{
	h->region_crc = crc_of(fd, h->region_off,
			       h->nr_regions * sizeof(struct wtsnap_disk_region));
	h->page_table_crc = crc_of(fd, h->page_table_off,
				   h->nr_pages * sizeof(struct wtsnap_page_entry));
	h->state_crc = crc_of(fd, h->state_off, h->state_size);
	seal_header(fd, h, extra);
}

/* The file offset of the @nth (from 0) record of @type, or 0. */
static uint64_t find_nth_record(int fd, uint32_t type, unsigned int nth)
{
	struct wtsnap_hdr h = read_hdr(fd);
	struct wtsnap_record_hdr rh;

	for (uint64_t off = h.state_off; off < h.state_off + h.state_size;
	     off += sizeof(rh) + ((rh.size + 7) & ~7U)) {
		if (pread(fd, &rh, sizeof(rh), off) != sizeof(rh))
			abort();
		if (rh.type == type && !nth--)
			return off;
	}
	return 0;
}

static uint64_t find_record(int fd, uint32_t type)
{
	return find_nth_record(fd, type, 0);
}

/* Give the record at @off a new type, with a right CRC. */
static void retype_record(int fd, uint64_t off, uint32_t type)
{
	struct wtsnap_record_hdr rh;
	uint8_t *data;

	if (pread(fd, &rh, sizeof(rh), off) != sizeof(rh))
		abort();
	data = malloc(rh.size + 1);
	if (!data || pread(fd, data, rh.size, off + sizeof(rh)) != rh.size)
		abort();
	rh.type = type;
	rh.crc = wtsnap_crc32c(wtsnap_crc32c(0, &rh, WTSNAP_RECORD_CRC_LEN), data, rh.size);
	poke(fd, off, &rh, sizeof(rh));
	free(data);
}

static int open_fd(int fd, unsigned int flags)
{
	struct wtsnap_file *f = NULL;
	int ret = wtsnap_file_open(fd, flags, &f);

	wtsnap_file_close(f);
	return ret;
}

/* ---- State records as an engine would store them ---- */

struct exp_rec {
	uint32_t type;
	uint32_t vcpu;
	uint32_t size;
	uint8_t *data;
};

static struct exp_rec expected[256];
static unsigned int nr_expected;

static size_t rec_size(uint32_t type, uint32_t vcpu)
{
	switch (type) {
	case WTSNAP_STATE_REGS:		return sizeof(struct kvm_regs);
	case WTSNAP_STATE_SREGS2:	return sizeof(struct kvm_sregs2);
	case WTSNAP_STATE_XSAVE:	return 4096 + 1024 * vcpu + 256;
	case WTSNAP_STATE_XCRS:		return sizeof(struct kvm_xcrs);
	case WTSNAP_STATE_MSRS:		return sizeof(struct kvm_msrs) +
					       (5 + vcpu) * sizeof(struct kvm_msr_entry);
	case WTSNAP_STATE_LAPIC:	return sizeof(struct kvm_lapic_state);
	case WTSNAP_STATE_VCPU_EVENTS:	return sizeof(struct kvm_vcpu_events);
	case WTSNAP_STATE_DEBUGREGS:	return sizeof(struct kvm_debugregs);
	case WTSNAP_STATE_NESTED:	return sizeof(struct kvm_nested_state) + 4096 * vcpu;
	case WTSNAP_STATE_MP_STATE:	return sizeof(struct kvm_mp_state);
	case WTSNAP_STATE_IRQCHIP:	return sizeof(struct kvm_irqchip);
	case WTSNAP_STATE_PIT2:		return sizeof(struct kvm_pit_state2);
	case WTSNAP_STATE_CLOCK:	return sizeof(struct kvm_clock_data);
	default:			return 13 * vcpu % 100;	/* the VMM's */
	}
}

/* A payload of the right shape: random bytes, the structural fields set. */
static uint8_t *make_payload(uint32_t type, uint32_t vcpu, uint32_t nth, size_t size)
{
	uint8_t *p = malloc(size + 1);

	if (!p)
		abort();
	fill(p, size, (uint64_t)type << 40 | (uint64_t)vcpu << 8 | nth);
	if (type == WTSNAP_STATE_MSRS)
		((struct kvm_msrs *)p)->nmsrs = 5 + vcpu;
	if (type == WTSNAP_STATE_NESTED)
		((struct kvm_nested_state *)p)->size = size;
	if (type == WTSNAP_STATE_IRQCHIP)
		((struct kvm_irqchip *)p)->chip_id = nth;
	return p;
}

static int add_rec(struct wtsnap_file *f, uint32_t type, uint32_t vcpu, uint32_t nth)
{
	size_t size = rec_size(type, vcpu);
	uint8_t *p = make_payload(type, vcpu, nth, size);
	int ret = wtsnap_file_add_state(f, type, vcpu, p, size);

	if (ret)
		free(p);
	else
		expected[nr_expected++] = (struct exp_rec){ type, vcpu, size, p };
	return ret;
}

static const uint32_t vcpu_types[] = {
	WTSNAP_STATE_REGS, WTSNAP_STATE_SREGS2, WTSNAP_STATE_XSAVE, WTSNAP_STATE_XCRS,
	WTSNAP_STATE_MSRS, WTSNAP_STATE_LAPIC, WTSNAP_STATE_VCPU_EVENTS,
	WTSNAP_STATE_DEBUGREGS, WTSNAP_STATE_NESTED, WTSNAP_STATE_MP_STATE,
};

#define VMM_DEV		(WTSNAP_STATE_VMM | 7)

static void add_vcpu_state(struct wtsnap_file *f, uint32_t vcpu)
{
	for (unsigned int i = 0; i < ARRAY_SIZE(vcpu_types); i++)
		CHECK_EQ(add_rec(f, vcpu_types[i], vcpu, 0), 0);
}

static void add_vm_state(struct wtsnap_file *f)
{
	for (uint32_t chip = 0; chip < 3; chip++)
		CHECK_EQ(add_rec(f, WTSNAP_STATE_IRQCHIP, WTSNAP_VCPU_VM, chip), 0);
	CHECK_EQ(add_rec(f, WTSNAP_STATE_PIT2, WTSNAP_VCPU_VM, 0), 0);
	CHECK_EQ(add_rec(f, WTSNAP_STATE_CLOCK, WTSNAP_VCPU_VM, 0), 0);
	/* The VMM's own: an odd size (padding), and an empty one. */
	CHECK_EQ(add_rec(f, VMM_DEV, 3, 0), 0);
	CHECK_EQ(add_rec(f, VMM_DEV | WTSNAP_STATE_OPTIONAL, 0, 0), 0);
}

static void reset_expected(void)
{
	for (unsigned int i = 0; i < nr_expected; i++)
		free(expected[i].data);
	nr_expected = 0;
}

static bool rec_equal(const struct wtsnap_record *r, const struct exp_rec *e)
{
	return r->type == e->type && r->vcpu == e->vcpu && r->size == e->size &&
	       !memcmp(r->data, e->data, e->size) && (uintptr_t)r->data % 8 == 0;
}

/* Every expected record, in order, and the filters. */
static void check_records(const struct wtsnap_file *f, bool ordered)
{
	struct wtsnap_record r;
	unsigned int pos = 0, n = 0, found;

	while (wtsnap_file_next_state(f, &pos, WTSNAP_STATE_ANY, WTSNAP_VCPU_ANY, &r) == 1) {
		found = 0;
		for (unsigned int i = 0; i < nr_expected; i++)
			found += rec_equal(&r, &expected[i]);
		CHECK_EQ(found, 1);
		if (ordered)
			CHECK(n < nr_expected && rec_equal(&r, &expected[n]));
		n++;
	}
	CHECK_EQ(n, nr_expected);

	for (uint32_t v = 0; v < NR_VCPUS; v++) {
		for (unsigned int t = 0; t < ARRAY_SIZE(vcpu_types); t++) {
			pos = 0;
			CHECK_EQ(wtsnap_file_next_state(f, &pos, vcpu_types[t], v, &r), 1);
			CHECK(r.type == vcpu_types[t] && r.vcpu == v &&
			      r.size == rec_size(r.type, v));
			CHECK_EQ(wtsnap_file_next_state(f, &pos, vcpu_types[t], v, &r), 0);
		}
	}
	/* The three irqchips, in the order they were added. */
	pos = 0;
	for (uint32_t chip = 0; chip < 3; chip++) {
		CHECK_EQ(wtsnap_file_next_state(f, &pos, WTSNAP_STATE_IRQCHIP,
						WTSNAP_VCPU_VM, &r), 1);
		CHECK_EQ(((const struct kvm_irqchip *)r.data)->chip_id, chip);
	}
	CHECK_EQ(wtsnap_file_next_state(f, &pos, WTSNAP_STATE_IRQCHIP, WTSNAP_VCPU_ANY, &r), 0);
	pos = 0;
	CHECK_EQ(wtsnap_file_next_state(f, &pos, WTSNAP_STATE_NESTED, 3, &r), 1);
	CHECK_EQ(r.size, sizeof(struct kvm_nested_state) + 3 * 4096);
	CHECK_EQ(((const struct kvm_nested_state *)r.data)->size, r.size);
	pos = 0;
	CHECK_EQ(wtsnap_file_next_state(f, &pos, VMM_DEV | WTSNAP_STATE_OPTIONAL, 0, &r), 1);
	CHECK_EQ(r.size, 0);
}

/* ---- Whole snapshots ---- */

static struct wtsnap_file *create(int fd)
{
	struct wtsnap_file *f = NULL;

	reset_expected();
	if (wtsnap_file_create(fd, regions, NR_REGIONS, NR_VCPUS, &f))
		abort();
	return f;
}

static void write_all_pages(struct wtsnap_file *f, uint64_t from, uint64_t to)
{
	uint8_t buf[PG];

	for (uint64_t i = from; i < to; i++) {
		fill_page(buf, page_gpa(i));
		CHECK_EQ(wtsnap_file_write_page(f, page_gpa(i), buf), 0);
	}
}

/* A complete snapshot in @fd: all pages, 4 vCPUs' and the VM's state. */
static void make_snapshot(int fd)
{
	struct wtsnap_file *f = create(fd);

	add_vm_state(f);
	for (uint32_t v = 0; v < NR_VCPUS; v++)
		add_vcpu_state(f, v);
	write_all_pages(f, 0, nr_pages());
	CHECK_EQ(wtsnap_file_finish(f, 0), 0);
	wtsnap_file_close(f);
}

static void check_pages(const struct wtsnap_file *f)
{
	uint8_t buf[PG];
	uint64_t bad = 0;

	for (uint64_t i = 0; i < nr_pages(); i++) {
		int ret = wtsnap_file_read_page(f, page_gpa(i), buf);

		CHECK_EQ(ret, 0);
		if (ret || !page_ok(buf, page_gpa(i))) {
			printf("# page %#llx wrong\n", (unsigned long long)page_gpa(i));
			tap_failed = 1;
			break;
		}
	}
	CHECK_EQ(wtsnap_file_verify(f, &bad), 0);
}

static void check_regions(const struct wtsnap_file *f)
{
	const struct wtsnap_region *r;
	uint64_t prev_end = 0;

	CHECK_EQ(wtsnap_file_regions(f, &r), NR_REGIONS);
	for (unsigned int i = 0; i < NR_REGIONS; i++) {
		const struct wtsnap_region *want = NULL;

		for (unsigned int j = 0; j < NR_REGIONS; j++)
			if (regions[j].gpa == r[i].gpa)
				want = &regions[j];
		CHECK(want && want->size == r[i].size && want->slot == r[i].slot &&
		      want->flags == r[i].flags);
		CHECK(i == 0 || r[i].gpa > r[i - 1].gpa);
		CHECK_EQ(r[i].data_off % (2 << 20), 0);
		CHECK(r[i].data_off >= prev_end);
		prev_end = r[i].data_off + r[i].size;
	}
}

/* ---- The tests ---- */

static void test_crc32c(void)
{
	static const char vec[] = "123456789";
	uint8_t buf[1024 + 16];

	CHECK_EQ(wtsnap_crc32c_sw(0, vec, 9), 0xe3069283);
	CHECK_EQ(wtsnap_crc32c(0, vec, 9), 0xe3069283);
	CHECK_EQ(wtsnap_crc32c(0, NULL, 0), 0);
	/* 32 zero bytes: RFC 3720's iSCSI test vector. */
	memset(buf, 0, 32);
	CHECK_EQ(wtsnap_crc32c_sw(0, buf, 32), 0x8a9136aa);
	/* Chaining, and every length and alignment through the tails. */
	fill(buf, sizeof(buf), 42);
	for (size_t off = 0; off < 16; off++) {
		for (size_t len = 0; len < 300; len++) {
			uint32_t whole = wtsnap_crc32c_sw(0, buf + off, len);

			CHECK_EQ(wtsnap_crc32c_sw(wtsnap_crc32c_sw(0, buf + off, len / 3),
						  buf + off + len / 3, len - len / 3), whole);
			if (wtsnap_crc32c_hw_ok() &&
			    wtsnap_crc32c_hw(0, buf + off, len) != whole) {
				CHECK_EQ(wtsnap_crc32c_hw(0, buf + off, len), whole);
				return;
			}
		}
	}
	if (wtsnap_crc32c_hw_ok())
		CHECK_EQ(wtsnap_crc32c_hw(0, vec, 9), 0xe3069283);
	else
		printf("# no SSE4.2: only the tables were tested\n");
}

static void test_roundtrip(void)
{
	struct wtsnap_file *f = NULL;
	struct wtsnap_info info;
	int fd = tmp_fd();

	make_snapshot(fd);
	CHECK_EQ(wtsnap_file_open(fd, 0, &f), 0);
	if (!f)
		goto out;
	CHECK_EQ(wtsnap_file_info(f, &info), 0);
	CHECK_EQ(info.major, WTSNAP_VERSION_MAJOR);
	CHECK_EQ(info.minor, WTSNAP_VERSION_MINOR);
	CHECK_EQ(info.page_size, PG);
	CHECK_EQ(info.complete, 1);
	CHECK_EQ(info.nr_vcpus, NR_VCPUS);
	CHECK_EQ(info.nr_regions, NR_REGIONS);
	CHECK_EQ(info.nr_records, nr_expected);
	CHECK_EQ(info.nr_skipped, 0);
	CHECK_EQ(info.nr_pages, nr_pages());
	CHECK_EQ(info.nr_present, nr_pages());
	CHECK_EQ(info.file_size, file_size(fd));
	check_regions(f);
	check_pages(f);
	check_records(f, true);
	wtsnap_file_close(f);
out:
	close(fd);
}

/* Four threads store every page, each in its own random order. */
static pthread_barrier_t start;

struct copier {
	pthread_t thread;
	struct wtsnap_file *f;
	unsigned int id;
	uint64_t stored, lost, errors;
};

static void *copier_run(void *arg)
{
	struct copier *c = arg;
	uint64_t n = nr_pages(), *order = malloc(n * sizeof(*order));
	uint8_t *buf = malloc(8 * PG);

	if (!order || !buf)
		abort();
	for (uint64_t i = 0; i < n; i++)
		order[i] = i;
	shuffle(order, n, 1000 * c->id);
	pthread_barrier_wait(&start);
	for (uint64_t i = 0; i < n; i++) {
		uint64_t gpa = page_gpa(order[i]), run = 1;
		int64_t ret;

		/* Odd threads copy runs, as a background copier would. */
		if (c->id & 1) {
			run = 1 + order[i] % 8;
			while (order[i] + run > n ||
			       page_gpa(order[i] + run - 1) != gpa + (run - 1) * PG)
				run--;
		}
		for (uint64_t k = 0; k < run; k++)
			fill_page(buf + k * PG, gpa + k * PG);
		ret = run == 1 && !(c->id & 1) ? wtsnap_file_write_page(c->f, gpa, buf) :
		      wtsnap_file_write_pages(c->f, gpa, buf, run);
		if (ret == 0 && !(c->id & 1))
			c->stored++;
		else if (ret == -EEXIST)
			c->lost++;
		else if (ret >= 0)
			c->stored += ret;
		else
			c->errors++;
	}
	/* And this vCPU's state, while the others copy. */
	for (unsigned int i = 0; i < ARRAY_SIZE(vcpu_types); i++) {
		size_t size = rec_size(vcpu_types[i], c->id);
		uint8_t *p = make_payload(vcpu_types[i], c->id, 0, size);

		c->errors += !!wtsnap_file_add_state(c->f, vcpu_types[i], c->id, p, size);
		free(p);
	}
	free(order);
	free(buf);
	return NULL;
}

static void test_threads(void)
{
	struct copier c[NR_VCPUS];
	int fd = tmp_fd();
	struct wtsnap_file *f = create(fd), *r = NULL;
	struct wtsnap_info info;
	uint64_t stored = 0, errors = 0;

	pthread_barrier_init(&start, NULL, NR_VCPUS);
	for (unsigned int i = 0; i < NR_VCPUS; i++) {
		c[i] = (struct copier){ .f = f, .id = i };
		if (pthread_create(&c[i].thread, NULL, copier_run, &c[i]))
			abort();
	}
	for (unsigned int i = 0; i < NR_VCPUS; i++) {
		pthread_join(c[i].thread, NULL);
		stored += c[i].stored;
		errors += c[i].errors;
		printf("# copier %u: %llu pages stored, %llu -EEXIST\n", i,
		       (unsigned long long)c[i].stored, (unsigned long long)c[i].lost);
	}
	pthread_barrier_destroy(&start);
	CHECK_EQ(errors, 0);
	CHECK_EQ(stored, nr_pages());	/* each page exactly once */
	CHECK_EQ(wtsnap_file_info(f, &info), 0);
	CHECK_EQ(info.nr_present, nr_pages());
	CHECK_EQ(info.nr_records, NR_VCPUS * ARRAY_SIZE(vcpu_types));
	add_vm_state(f);
	for (uint32_t v = 0; v < NR_VCPUS; v++)		/* what the threads stored */
		for (unsigned int i = 0; i < ARRAY_SIZE(vcpu_types); i++) {
			size_t size = rec_size(vcpu_types[i], v);

			expected[nr_expected++] = (struct exp_rec){ vcpu_types[i], v, size,
				make_payload(vcpu_types[i], v, 0, size) };
		}
	CHECK_EQ(wtsnap_file_finish(f, WTSNAP_FINISH_SYNC), 0);
	wtsnap_file_close(f);
	CHECK_EQ(wtsnap_file_open(fd, 0, &r), 0);
	if (r) {
		check_pages(r);
		check_records(r, false);
	}
	wtsnap_file_close(r);
	close(fd);
}

static void test_unfinished(void)
{
	int fd = tmp_fd();
	struct wtsnap_file *f = create(fd), *r = NULL;
	struct wtsnap_info info;
	uint64_t half = nr_pages() / 2, bad = 0;
	uint8_t buf[PG];

	add_vm_state(f);
	for (uint32_t v = 0; v < NR_VCPUS; v++)
		add_vcpu_state(f, v);
	write_all_pages(f, 0, half);
	CHECK_EQ(wtsnap_file_finish(f, 0), -ENODATA);
	CHECK_EQ(wtsnap_file_info(f, &info), 0);
	CHECK_EQ(info.complete, 0);
	CHECK_EQ(info.nr_present, half);
	/* A crash here: readers refuse the file, or inspect it if asked. */
	CHECK_EQ(open_fd(fd, 0), -ENODATA);
	CHECK_EQ(wtsnap_file_open(fd, WTSNAP_OPEN_PARTIAL, &r), 0);
	if (r) {
		CHECK_EQ(wtsnap_file_info(r, &info), 0);
		CHECK_EQ(info.complete, 0);
		CHECK_EQ(info.nr_present, half);
		CHECK_EQ(info.nr_records, nr_expected);
		CHECK_EQ(info.file_size, 0);
		CHECK_EQ(wtsnap_file_read_page(r, page_gpa(0), buf), 0);
		CHECK(page_ok(buf, page_gpa(0)));
		CHECK_EQ(wtsnap_file_read_page(r, page_gpa(half), buf), -ENODATA);
		CHECK_EQ(wtsnap_file_verify(r, &bad), -ENODATA);
		CHECK_EQ(bad, 0);	/* the lowest gpa missing: region 2's */
		CHECK_EQ(wtsnap_file_map_region(r, 0, (void **)&bad), -ENODATA);
		check_records(r, true);
		wtsnap_file_close(r);
	}
	/* A torn last record: the partial reader stops before it. */
	poke(fd, file_size(fd), "torn", 4);
	CHECK_EQ(wtsnap_file_open(fd, WTSNAP_OPEN_PARTIAL, &r), 0);
	if (r) {
		CHECK_EQ(wtsnap_file_info(r, &info), 0);
		CHECK_EQ(info.nr_records, nr_expected);
		wtsnap_file_close(r);
	}
	wtsnap_file_close(f);
	close(fd);

	/* The rest stored after a refused finish: the retry succeeds. */
	fd = tmp_fd();
	f = create(fd);
	write_all_pages(f, 0, half);
	CHECK_EQ(wtsnap_file_finish(f, 0), -ENODATA);
	write_all_pages(f, half, nr_pages());
	CHECK_EQ(wtsnap_file_finish(f, 0), 0);
	wtsnap_file_close(f);
	CHECK_EQ(open_fd(fd, 0), 0);
	close(fd);
}

static void test_corrupt_page(void)
{
	struct wtsnap_file *f = NULL;
	const struct wtsnap_region *r;
	uint64_t bad = 0, gpa;
	uint8_t buf[PG];
	int fd = tmp_fd();

	make_snapshot(fd);
	CHECK_EQ(wtsnap_file_open(fd, 0, &f), 0);
	if (!f)
		goto out;
	wtsnap_file_regions(f, &r);
	gpa = r[1].gpa + 300 * PG;
	flip(fd, r[1].data_off + 300 * PG + 1234);
	CHECK_EQ(wtsnap_file_verify(f, &bad), -EBADMSG);
	CHECK_EQ(bad, gpa);
	CHECK_EQ(wtsnap_file_read_page(f, gpa, buf), -EBADMSG);
	CHECK_EQ(wtsnap_file_read_page(f, gpa + PG, buf), 0);
	wtsnap_file_close(f);
	/* Page data has no table CRC: a reopen succeeds, verify finds it. */
	CHECK_EQ(wtsnap_file_open(fd, 0, &f), 0);
	if (f) {
		CHECK_EQ(wtsnap_file_verify(f, &bad), -EBADMSG);
		CHECK_EQ(bad, gpa);
		wtsnap_file_close(f);
	}
out:
	close(fd);
}

static void test_corrupt_meta(void)
{
	int fd = tmp_fd(), c;
	struct wtsnap_hdr h, h2;
	uint64_t size;

	make_snapshot(fd);
	h = read_hdr(fd);
	size = file_size(fd);
	CHECK_EQ(open_fd(fd, 0), 0);

#define DAMAGED(expect, ...) do {					\
	c = clone_fd(fd);						\
	__VA_ARGS__;							\
	CHECK_EQ(open_fd(c, 0), expect);				\
	CHECK_EQ(open_fd(c, WTSNAP_OPEN_PARTIAL), expect);		\
	close(c);							\
} while (0)
	DAMAGED(-ENOEXEC, flip(c, 0));				/* magic */
	DAMAGED(-EBADMSG, flip(c, 41));				/* nr_pages */
	DAMAGED(-EBADMSG, flip(c, 110));			/* reserved */
	DAMAGED(-EBADMSG, flip(c, h.region_off + 3));		/* a gpa */
	DAMAGED(-EBADMSG, flip(c, h.region_off + 28));		/* its flags */
	DAMAGED(-EBADMSG, flip(c, h.page_table_off + 8 * 17));	/* a page's CRC */
	DAMAGED(-EBADMSG, flip(c, h.state_off + 16 + 5));	/* a payload */
	DAMAGED(-EBADMSG, flip(c, h.state_off + 8));		/* a record's size */
	/* The state section's CRC right: the record's catches it. */
	DAMAGED(-EBADMSG, { flip(c, h.state_off + 16 + 5); h2 = h; reseal(c, &h2, NULL); });
	DAMAGED(-EBADMSG, truncate_to(c, size - 8));
	DAMAGED(-EBADMSG, poke(c, size, "x", 1));
	DAMAGED(-EBADMSG, truncate_to(c, 64));
	DAMAGED(-ENOEXEC, truncate_to(c, 0));

	/* Sealed again, so that only the meaning is wrong. */
	DAMAGED(-EBADMSG, {
		struct wtsnap_page_entry e = { 0, WTSNAP_PAGE_ABSENT };

		poke(c, h.page_table_off + 8 * 5, &e, sizeof(e));
		h2 = h;
		reseal(c, &h2, NULL);
	});	/* complete, yet a page absent */
	DAMAGED(-EBADMSG, { h2 = h; h2.region_off = 1ULL << 62; seal_header(c, &h2, NULL); });
	DAMAGED(-EBADMSG, { h2 = h; h2.page_table_off += PG; seal_header(c, &h2, NULL); });
	DAMAGED(-EBADMSG, { h2 = h; h2.nr_regions = 0; seal_header(c, &h2, NULL); });
	DAMAGED(-EBADMSG, { h2 = h; h2.nr_pages--; seal_header(c, &h2, NULL); });
	DAMAGED(-EBADMSG, { h2 = h; h2.nr_records++; seal_header(c, &h2, NULL); });
	DAMAGED(-EBADMSG, { h2 = h; h2.state_size -= 8; seal_header(c, &h2, NULL); });
	DAMAGED(-EBADMSG, { h2 = h; h2.file_size += PG; seal_header(c, &h2, NULL); });
	DAMAGED(-EBADMSG, {
		/* vCPU 0's and 1's registers swapped: each record intact. */
		uint64_t a = find_nth_record(c, WTSNAP_STATE_REGS, 0);
		uint64_t b = find_nth_record(c, WTSNAP_STATE_REGS, 1);
		uint8_t ra[16 + sizeof(struct kvm_regs)], rb[sizeof(ra)];

		if (pread(c, ra, sizeof(ra), a) != sizeof(ra) ||
		    pread(c, rb, sizeof(rb), b) != sizeof(rb))
			abort();
		poke(c, a, rb, sizeof(rb));
		poke(c, b, ra, sizeof(ra));
	});
	DAMAGED(-EBADMSG, {
		struct wtsnap_disk_region d;

		/* Region 1 moved onto region 0's data. */
		if (pread(c, &d, sizeof(d), h.region_off + sizeof(d)) != sizeof(d))
			abort();
		d.data_off -= 2 << 20;
		poke(c, h.region_off + sizeof(d), &d, sizeof(d));
		h2 = h;
		reseal(c, &h2, NULL);
	});
	DAMAGED(-EBADMSG, {
		/* A record naming vCPU 4 of 4, with a right CRC. */
		uint64_t off = find_record(c, WTSNAP_STATE_REGS);
		struct wtsnap_record_hdr rh;

		if (pread(c, &rh, sizeof(rh), off) != sizeof(rh))
			abort();
		rh.vcpu = NR_VCPUS;
		poke(c, off, &rh, sizeof(rh));
		retype_record(c, off, WTSNAP_STATE_REGS);
		h2 = h;
		reseal(c, &h2, NULL);
	});
#undef DAMAGED
	close(fd);
}

static void test_unknown_types(void)
{
	struct wtsnap_file *f = NULL;
	struct wtsnap_info info;
	struct wtsnap_record rec;
	struct wtsnap_hdr h;
	unsigned int pos = 0;
	int fd = tmp_fd(), c;
	uint64_t off;

	make_snapshot(fd);
	h = read_hdr(fd);
	off = find_record(fd, VMM_DEV);
	CHECK(off);

	/* A newer writer's optional record: skipped. */
	c = clone_fd(fd);
	retype_record(c, off, WTSNAP_STATE_OPTIONAL | 0x777);
	reseal(c, &h, NULL);
	CHECK_EQ(wtsnap_file_open(c, 0, &f), 0);
	if (f) {
		CHECK_EQ(wtsnap_file_info(f, &info), 0);
		CHECK_EQ(info.nr_skipped, 1);
		CHECK_EQ(info.nr_records, nr_expected - 1);
		CHECK_EQ(wtsnap_file_next_state(f, &pos, WTSNAP_STATE_OPTIONAL | 0x777,
						WTSNAP_VCPU_ANY, &rec), 0);
		pos = 0;
		CHECK_EQ(wtsnap_file_next_state(f, &pos, VMM_DEV, WTSNAP_VCPU_ANY, &rec), 0);
		pos = 0;
		CHECK_EQ(wtsnap_file_next_state(f, &pos, WTSNAP_STATE_CLOCK,
						WTSNAP_VCPU_VM, &rec), 1);
		wtsnap_file_close(f);
	}
	close(c);

	/* A mandatory one: refused. */
	c = clone_fd(fd);
	retype_record(c, off, 0x777);
	reseal(c, &h, NULL);
	CHECK_EQ(open_fd(c, 0), -EOPNOTSUPP);
	close(c);

	/* The VMM's types come back as they went in. */
	CHECK_EQ(wtsnap_file_open(fd, 0, &f), 0);
	if (f) {
		pos = 0;
		CHECK_EQ(wtsnap_file_next_state(f, &pos, VMM_DEV, 3, &rec), 1);
		CHECK_EQ(rec.size, rec_size(VMM_DEV, 3));
		wtsnap_file_close(f);
	}
	close(fd);
}

static void test_versions(void)
{
	struct wtsnap_file *f = NULL;
	struct wtsnap_info info;
	struct wtsnap_hdr h, h2;
	uint8_t extra[32];
	int fd = tmp_fd(), c;

	make_snapshot(fd);
	h = read_hdr(fd);

	c = clone_fd(fd);
	h2 = h;
	h2.major = WTSNAP_VERSION_MAJOR + 1;
	reseal(c, &h2, NULL);
	CHECK_EQ(open_fd(c, 0), -EOPNOTSUPP);
	/* Not sealed: a damaged header, whatever its major says. */
	h2.major = WTSNAP_VERSION_MAJOR + 2;
	poke(c, 0, &h2, sizeof(h2));
	CHECK_EQ(open_fd(c, 0), -EBADMSG);
	close(c);

	c = clone_fd(fd);
	h2 = h;
	h2.page_size = 8192;
	reseal(c, &h2, NULL);
	CHECK_EQ(open_fd(c, 0), -EOPNOTSUPP);
	close(c);

	/* A newer minor with a longer header: readable. */
	c = clone_fd(fd);
	h2 = h;
	h2.minor = WTSNAP_VERSION_MINOR + 9;
	h2.header_size = sizeof(h2) + sizeof(extra);
	fill(extra, sizeof(extra), 7);
	reseal(c, &h2, extra);
	CHECK_EQ(wtsnap_file_open(c, 0, &f), 0);
	if (f) {
		CHECK_EQ(wtsnap_file_info(f, &info), 0);
		CHECK_EQ(info.minor, WTSNAP_VERSION_MINOR + 9);
		check_pages(f);
		wtsnap_file_close(f);
	}
	flip(c, sizeof(h2) + 5);	/* its new part is covered too */
	CHECK_EQ(open_fd(c, 0), -EBADMSG);
	close(c);
	close(fd);
}

static void test_mmap(void)
{
	struct wtsnap_file *f = NULL;
	const struct wtsnap_region *r;
	uint8_t buf[PG];
	uint8_t *p = NULL, *q = NULL;
	int fd = tmp_fd();
	bool ok = true;
	uint64_t gpa, size;

	make_snapshot(fd);
	CHECK_EQ(wtsnap_file_open(fd, 0, &f), 0);
	if (!f)
		goto out;
	wtsnap_file_regions(f, &r);
	gpa = r[1].gpa;
	size = r[1].size;
	CHECK_EQ(wtsnap_file_map_region(f, NR_REGIONS, (void **)&p), -EINVAL);
	CHECK_EQ(wtsnap_file_map_region(f, 1, NULL), -EINVAL);
	CHECK_EQ(wtsnap_file_map_region(f, 1, (void **)&p), 0);
	if (!p)
		goto out;
	for (uint64_t off = 0; off < r[1].size; off += PG)
		ok &= page_ok(p + off, r[1].gpa + off);
	CHECK(ok);
	/* The guest writes: private copies, the file keeps its pages. */
	memset(p, 0xaa, PG);
	memset(p + r[1].size - PG, 0x55, PG);
	CHECK_EQ(wtsnap_file_map_region(f, 1, (void **)&q), 0);
	if (q) {
		CHECK(page_ok(q, r[1].gpa));
		munmap(q, r[1].size);
	}
	CHECK_EQ(wtsnap_file_read_page(f, r[1].gpa, buf), 0);
	CHECK(page_ok(buf, r[1].gpa));
	CHECK_EQ(wtsnap_file_read_page(f, r[1].gpa + r[1].size - PG, buf), 0);
	CHECK(page_ok(buf, r[1].gpa + r[1].size - PG));
	wtsnap_file_close(f);
	/* The mapping outlives the handle. */
	CHECK_EQ(p[0], 0xaa);
	CHECK(page_ok(p + PG, gpa + PG));
	munmap(p, size);
	CHECK_EQ(open_fd(fd, 0), 0);
	f = NULL;
out:
	wtsnap_file_close(f);
	close(fd);
}

static void test_bad_input(void)
{
	struct wtsnap_region rg[2] = {
		{ .gpa = 0, .size = 4 * PG, .slot = 0 },
		{ .gpa = 8 * PG, .size = 4 * PG, .slot = 1 },
	};
	struct wtsnap_file *f = NULL, *r = NULL;
	struct kvm_regs regs = { 0 };
	struct kvm_msrs msrs = { .nmsrs = 1 };
	struct kvm_nested_state nested = { .size = sizeof(nested) + 8 };
	struct kvm_irqchip chip = { .chip_id = 3 };
	struct wtsnap_record rec;
	uint8_t page[PG] = { 0 }, *big;
	unsigned int pos = 0;
	uint64_t bad;
	int fd = tmp_fd(), ro;

#define CREATE(a, b, n, v)	wtsnap_file_create(fd, (struct wtsnap_region[]){ a, b }, n, v, &f)
#define R(g, s, sl)		((struct wtsnap_region){ .gpa = (g), .size = (s), .slot = (sl) })
	CHECK_EQ(wtsnap_file_create(fd, NULL, 1, 1, &f), -EINVAL);
	CHECK_EQ(wtsnap_file_create(fd, rg, 0, 1, &f), -EINVAL);
	CHECK_EQ(wtsnap_file_create(fd, rg, 1, 1, NULL), -EINVAL);
	CHECK_EQ(CREATE(R(0x800, PG, 0), R(PG, PG, 1), 2, 1), -EINVAL);	/* gpa */
	CHECK_EQ(CREATE(R(0, PG + 1, 0), R(2 * PG, PG, 1), 2, 1), -EINVAL);	/* size */
	CHECK_EQ(CREATE(R(0, 0, 0), R(PG, PG, 1), 2, 1), -EINVAL);		/* empty */
	CHECK_EQ(CREATE(R(-PG, 2 * PG, 0), R(PG, PG, 1), 2, 1), -EINVAL);	/* wraps */
	CHECK_EQ(CREATE(R(1ULL << 52, PG, 0), R(PG, PG, 1), 2, 1), -EINVAL);	/* > x86 */
	CHECK_EQ(CREATE(R(0, 2 * PG, 0), R(PG, PG, 1), 2, 1), -EEXIST);	/* overlap */
	CHECK_EQ(CREATE(R(4 * PG, PG, 0), R(4 * PG, PG, 1), 2, 1), -EEXIST);	/* twice */
	CHECK_EQ(CREATE(R(0, PG, 5), R(PG, PG, 5), 2, 1), -EEXIST);		/* slot */
	CHECK_EQ(wtsnap_file_create(fd, rg, 2, WTSNAP_MAX_VCPUS + 1, &f), -E2BIG);
	CHECK_EQ(wtsnap_file_create(fd, rg, WTSNAP_MAX_REGIONS + 1, 1, &f), -E2BIG);
	CHECK_EQ(wtsnap_file_create(-1, rg, 2, 1, &f), -EBADF);
	ro = reopen(fd, O_RDONLY);
	CHECK_EQ(wtsnap_file_create(ro, rg, 2, 1, &f), -EACCES);
	close(ro);
	CHECK(f == NULL);
#undef CREATE
#undef R

	CHECK_EQ(wtsnap_file_create(fd, rg, 2, 2, &f), 0);
	if (!f)
		goto out;
	CHECK_EQ(wtsnap_file_write_page(f, 0x10, page), -EINVAL);
	CHECK_EQ(wtsnap_file_write_page(f, 4 * PG, page), -ENOENT);	/* the gap */
	CHECK_EQ(wtsnap_file_write_page(f, 12 * PG, page), -ENOENT);	/* past the end */
	CHECK_EQ(wtsnap_file_write_page(f, -PG, page), -ENOENT);
	CHECK_EQ(wtsnap_file_write_pages(f, 2 * PG, page, 0), -EINVAL);
	CHECK_EQ(wtsnap_file_write_pages(f, 2 * PG, page, 3), -EINVAL);	/* leaves */
	CHECK_EQ(wtsnap_file_write_page(f, 0, page), 0);
	CHECK_EQ(wtsnap_file_write_page(f, 0, page), -EEXIST);
	big = calloc(4, PG);
	CHECK_EQ(wtsnap_file_write_pages(f, 0, big, 4), 3);		/* skips page 0 */
	CHECK_EQ(wtsnap_file_write_pages(f, 0, big, 4), 0);

	CHECK_EQ(wtsnap_file_add_state(f, 0x55, 0, page, 8), -EINVAL);	/* unknown */
	CHECK_EQ(wtsnap_file_add_state(f, WTSNAP_STATE_OPTIONAL | 0x55, 0, page, 8), -EINVAL);
	CHECK_EQ(wtsnap_file_add_state(f, WTSNAP_STATE_ANY, 0, page, 8), -EINVAL);
	CHECK_EQ(wtsnap_file_add_state(f, WTSNAP_STATE_REGS, 0, &regs, sizeof(regs) - 8),
		 -EINVAL);
	CHECK_EQ(wtsnap_file_add_state(f, WTSNAP_STATE_REGS, 2, &regs, sizeof(regs)), -EINVAL);
	CHECK_EQ(wtsnap_file_add_state(f, WTSNAP_STATE_REGS, WTSNAP_VCPU_VM, &regs,
				       sizeof(regs)), -EINVAL);
	CHECK_EQ(wtsnap_file_add_state(f, WTSNAP_STATE_REGS, 1, NULL, sizeof(regs)), -EINVAL);
	CHECK_EQ(wtsnap_file_add_state(f, WTSNAP_STATE_CLOCK, 0, page,
				       sizeof(struct kvm_clock_data)), -EINVAL);
	CHECK_EQ(wtsnap_file_add_state(f, WTSNAP_STATE_MSRS, 0, &msrs, sizeof(msrs)), -EINVAL);
	CHECK_EQ(wtsnap_file_add_state(f, WTSNAP_STATE_NESTED, 0, &nested, sizeof(nested)),
		 -EINVAL);
	CHECK_EQ(wtsnap_file_add_state(f, WTSNAP_STATE_IRQCHIP, WTSNAP_VCPU_VM, &chip,
				       sizeof(chip)), -EINVAL);
	CHECK_EQ(wtsnap_file_add_state(f, WTSNAP_STATE_XSAVE, 0, page, 4095), -EINVAL);
	CHECK_EQ(wtsnap_file_add_state(f, WTSNAP_STATE_VMM | 1, 2, page, 8), -EINVAL);
	CHECK_EQ(wtsnap_file_add_state(f, WTSNAP_STATE_VMM | 1, 0, page,
				       WTSNAP_MAX_RECORD + 1), -E2BIG);
	CHECK_EQ(wtsnap_file_add_state(f, WTSNAP_STATE_REGS, 1, &regs, sizeof(regs)), 0);
	CHECK_EQ(wtsnap_file_add_state(f, WTSNAP_STATE_XSAVE, 1, big, 3 * PG), 0);

	/* Readers' calls on a writer, and the end of writing. */
	CHECK_EQ(wtsnap_file_next_state(f, &pos, 0, WTSNAP_VCPU_ANY, &rec), -EBADF);
	CHECK_EQ(wtsnap_file_read_page(f, 0, page), -EBADF);
	CHECK_EQ(wtsnap_file_verify(f, &bad), -EBADF);
	CHECK_EQ(wtsnap_file_map_region(f, 0, (void **)&big), -EBADF);
	CHECK_EQ(wtsnap_file_finish(f, 2), -EINVAL);
	CHECK_EQ(wtsnap_file_finish(f, 0), -ENODATA);
	CHECK_EQ(wtsnap_file_write_pages(f, 8 * PG, big, 4), 4);
	CHECK_EQ(wtsnap_file_finish(f, 0), 0);
	CHECK_EQ(wtsnap_file_finish(f, 0), -EBADF);
	CHECK_EQ(wtsnap_file_write_page(f, 0, page), -EBADF);
	CHECK_EQ(wtsnap_file_add_state(f, WTSNAP_STATE_REGS, 0, &regs, sizeof(regs)), -EBADF);
	free(big);

	CHECK_EQ(wtsnap_file_open(fd, 4, &r), -EINVAL);
	CHECK_EQ(wtsnap_file_open(fd, 0, NULL), -EINVAL);
	CHECK_EQ(wtsnap_file_open(-1, 0, &r), -EBADF);
	CHECK_EQ(wtsnap_file_open(fd, 0, &r), 0);
	if (r) {
		CHECK_EQ(wtsnap_file_write_page(r, 0, page), -EBADF);
		CHECK_EQ(wtsnap_file_add_state(r, WTSNAP_STATE_REGS, 0, &regs, sizeof(regs)),
			 -EBADF);
		CHECK_EQ(wtsnap_file_finish(r, 0), -EBADF);
		CHECK_EQ(wtsnap_file_read_page(r, 0x10, page), -EINVAL);
		CHECK_EQ(wtsnap_file_read_page(r, 5 * PG, page), -ENOENT);
		CHECK_EQ(wtsnap_file_next_state(r, NULL, 0, 0, &rec), -EINVAL);
		CHECK_EQ(wtsnap_file_next_state(r, &pos, WTSNAP_STATE_XSAVE, 1, &rec), 1);
		CHECK_EQ(rec.size, 3 * PG);
		CHECK_EQ(wtsnap_file_next_state(r, &pos, WTSNAP_STATE_XSAVE, 1, &rec), 0);
		wtsnap_file_close(r);
	}
	wtsnap_file_close(f);
	f = NULL;
	{
		/* Not a snapshot at all. */
		int other = tmp_fd();

		poke(other, 0, page, sizeof(page));
		CHECK_EQ(open_fd(other, 0), -ENOEXEC);
		close(other);
	}
out:
	wtsnap_file_close(f);
	CHECK_EQ(wtsnap_file_info(NULL, NULL), -EINVAL);
	close(fd);
}

/* A write that fails (the file size limit) fails the whole snapshot. */
static void test_write_error(void)
{
	int fd = tmp_fd();
	struct wtsnap_file *f = create(fd);
	struct rlimit old, lim;
	uint8_t page[PG] = { 0 };

	signal(SIGXFSZ, SIG_IGN);
	getrlimit(RLIMIT_FSIZE, &old);
	lim = old;
	lim.rlim_cur = file_size(fd);	/* no room for records */
	setrlimit(RLIMIT_FSIZE, &lim);
	CHECK_EQ(wtsnap_file_write_page(f, page_gpa(0), page), 0);
	CHECK_EQ(wtsnap_file_add_state(f, VMM_DEV, 0, page, 64), -EFBIG);
	setrlimit(RLIMIT_FSIZE, &old);
	signal(SIGXFSZ, SIG_DFL);
	CHECK_EQ(wtsnap_file_write_page(f, page_gpa(1), page), -EFBIG);
	CHECK_EQ(wtsnap_file_add_state(f, VMM_DEV, 0, page, 64), -EFBIG);
	CHECK_EQ(wtsnap_file_finish(f, 0), -EFBIG);
	wtsnap_file_close(f);
	CHECK_EQ(open_fd(fd, 0), -ENODATA);
	close(fd);
}

static const struct tap_test tests[] = {
	{ "crc32c", test_crc32c },
	{ "roundtrip", test_roundtrip },
	{ "threads", test_threads },
	{ "unfinished", test_unfinished },
	{ "corrupt_page", test_corrupt_page },
	{ "corrupt_meta", test_corrupt_meta },
	{ "unknown_types", test_unknown_types },
	{ "versions", test_versions },
	{ "mmap_private", test_mmap },
	{ "bad_input", test_bad_input },
	{ "write_error", test_write_error },
};

int main(int argc, char **argv)
{
	int ret = tap_main(tests, ARRAY_SIZE(tests), argc, argv);

	reset_expected();
	return ret;
}
