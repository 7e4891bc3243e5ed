// SPDX-License-Identifier: MIT
/*
 * The lazy snapshot's file: writer and reader.  The layout and the rules
 * are in Documentation/wtrack-snapshot-format.rst.
 *
 * The writer maps the file's page table shared: a page's entry is its
 * claim (an atomic compare-and-swap on the state), then its CRC and its
 * "present" state once the page is written.  So the table in the file is
 * always the truth about which pages made it, even if the process dies,
 * and storing a page costs one pwrite() and no lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/kvm.h>
#include "internal.h"
#include "wtsnap.h"
#include "snapfmt.h"

#define PAGE		((uint64_t)WTSNAP_PAGE_SIZE)
#define ALIGN_UP(x, a)	(((x) + (a) - 1) & ~((uint64_t)(a) - 1))
#define VERIFY_CHUNK	(256 * PAGE)
#define GPA_LIMIT	(1ULL << 52)	/* x86's largest MAXPHYADDR */

struct rec {
	uint32_t type;
	uint32_t vcpu;
	uint32_t size;
	const void *data;
};

struct wtsnap_file {
	int fd;
	bool writer;
	struct wtsnap_hdr hdr;
	struct wtsnap_region *regions;	/* sorted by gpa */
	uint64_t *first_page;		/* each region's first table entry */
	struct wtsnap_page_entry *pages;	/* the file's page table, mapped */
	size_t pages_len;

	/* Writer; the counters are atomic. */
	int finished;
	int error;			/* the first failed write, sticky */
	uint64_t nr_present;
	uint64_t state_end;		/* file offset of the next record */
	uint32_t nr_records;

	/* Reader. */
	void *state;			/* the state section */
	struct rec *recs;
	uint32_t nr_recs, cap_recs;
	uint32_t nr_skipped;
};

/* I/O helpers: whole buffers, retrying short transfers and EINTR. */
static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const char *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= n;
		off += n;
	}
	return 0;
}

/* A short read means the file is shorter than its tables say. */
static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	char *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EBADMSG;
		p += n;
		len -= n;
		off += n;
	}
	return 0;
}

/* The index of the region holding @gpa, by binary search, or -ENOENT. */
static int find_region(const struct wtsnap_file *f, uint64_t gpa)
{
	int lo = 0, hi = f->hdr.nr_regions - 1;

	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2;
		const struct wtsnap_region *r = &f->regions[mid];

		if (gpa < r->gpa)
			hi = mid - 1;
		else if (gpa - r->gpa >= r->size)
			lo = mid + 1;
		else
			return mid;
	}
	return -ENOENT;
}

/* ---- Record types ---- */

static bool var_xsave(const void *d, size_t len)
{
	(void)d;
	return len % sizeof(uint32_t) == 0;	/* kvm_xsave.extra[] */
}

static bool var_msrs(const void *d, size_t len)
{
	const struct kvm_msrs *m = d;

	return len == sizeof(*m) + (uint64_t)m->nmsrs * sizeof(m->entries[0]);
}

static bool var_nested(const void *d, size_t len)
{
	return ((const struct kvm_nested_state *)d)->size == len;
}

static bool var_cpuid(const void *d, size_t len)
{
	const struct kvm_cpuid2 *c = d;

	return len == sizeof(*c) + (uint64_t)c->nent * sizeof(c->entries[0]);
}

static bool chk_irqchip(const void *d, size_t len)
{
	(void)len;
	return ((const struct kvm_irqchip *)d)->chip_id <= KVM_IRQCHIP_IOAPIC;
}

/*
 * @size is the structure's size: exact without @var, the minimum with it,
 * and @check then looks at the rest.  Without @var, @check (if any) looks
 * at the contents.
 */
static const struct type_info {
	uint32_t type;
	uint32_t size;
	bool var;
	bool (*check)(const void *data, size_t len);
} types[] = {
#define FIXED(t, s)	{ .type = (t), .size = sizeof(s) }
#define VAR(t, s, c)	{ .type = (t), .size = sizeof(s), .var = true, .check = (c) }
	FIXED(WTSNAP_STATE_REGS, struct kvm_regs),
	FIXED(WTSNAP_STATE_SREGS, struct kvm_sregs),
	FIXED(WTSNAP_STATE_SREGS2, struct kvm_sregs2),
	FIXED(WTSNAP_STATE_FPU, struct kvm_fpu),
	VAR(WTSNAP_STATE_XSAVE, struct kvm_xsave, var_xsave),
	FIXED(WTSNAP_STATE_XCRS, struct kvm_xcrs),
	VAR(WTSNAP_STATE_MSRS, struct kvm_msrs, var_msrs),
	FIXED(WTSNAP_STATE_LAPIC, struct kvm_lapic_state),
	FIXED(WTSNAP_STATE_VCPU_EVENTS, struct kvm_vcpu_events),
	FIXED(WTSNAP_STATE_DEBUGREGS, struct kvm_debugregs),
	VAR(WTSNAP_STATE_NESTED, struct kvm_nested_state, var_nested),
	FIXED(WTSNAP_STATE_MP_STATE, struct kvm_mp_state),
	VAR(WTSNAP_STATE_CPUID, struct kvm_cpuid2, var_cpuid),
	{ .type = WTSNAP_STATE_IRQCHIP, .size = sizeof(struct kvm_irqchip),
	  .check = chk_irqchip },
	FIXED(WTSNAP_STATE_PIT2, struct kvm_pit_state2),
	FIXED(WTSNAP_STATE_CLOCK, struct kvm_clock_data),
#undef FIXED
#undef VAR
};

#define VM_TYPES	0x100	/* types from here are VM-wide */

/*
 * 0 if the record is valid; 1 if its type is unknown and optional;
 * -EOPNOTSUPP if unknown and mandatory; -EINVAL if it does not fit its
 * type.  The writer refuses all but 0, the reader skips 1.
 */
static int check_record(uint32_t nr_vcpus, uint32_t type, uint32_t vcpu,
			const void *data, size_t len)
{
	const struct type_info *t = NULL;
	bool vm;

	if (type & WTSNAP_STATE_VMM)
		return vcpu < nr_vcpus || vcpu == WTSNAP_VCPU_VM ? 0 : -EINVAL;
	for (size_t i = 0; i < ARRAY_SIZE(types); i++)
		if (types[i].type == type)
			t = &types[i];
	if (!t)
		return type & WTSNAP_STATE_OPTIONAL ? 1 : -EOPNOTSUPP;
	vm = type >= VM_TYPES;
	if (vm ? vcpu != WTSNAP_VCPU_VM : vcpu >= nr_vcpus)
		return -EINVAL;
	if (t->var ? len < t->size : len != t->size)
		return -EINVAL;
	return !t->check || t->check(data, len) ? 0 : -EINVAL;
}

static uint32_t record_crc(const struct wtsnap_record_hdr *rh, const void *data)
{
	return wtsnap_crc32c(wtsnap_crc32c(0, rh, WTSNAP_RECORD_CRC_LEN),
			     data, rh->size);
}

/* ---- Writer ---- */

static int cmp_gpa(const void *a, const void *b)
{
	const struct wtsnap_region *x = a, *y = b;

	return x->gpa < y->gpa ? -1 : x->gpa > y->gpa;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Sort a copy of the regions by gpa and check them. */
static int check_regions(struct wtsnap_region *r, unsigned int n)
{
	uint32_t *slots;
	int ret = 0;

	for (unsigned int i = 0; i < n; i++)
		if (!r[i].size || (r[i].gpa | r[i].size) % PAGE ||
		    r[i].gpa >= GPA_LIMIT || r[i].size > GPA_LIMIT - r[i].gpa)
			return -EINVAL;
	qsort(r, n, sizeof(*r), cmp_gpa);
	for (unsigned int i = 1; i < n; i++)
		if (r[i].gpa < r[i - 1].gpa + r[i - 1].size)
			return -EEXIST;

	slots = malloc(n * sizeof(*slots));
	if (!slots)
		return -ENOMEM;
	for (unsigned int i = 0; i < n; i++)
		slots[i] = r[i].slot;
	qsort(slots, n, sizeof(*slots), cmp_u32);
	for (unsigned int i = 1; i < n; i++)
		if (slots[i] == slots[i - 1])
			ret = -EEXIST;
	free(slots);
	return ret;
}

/*
 * Place everything: header page, memory table, page table, then each
 * region's data 2 MiB aligned (a restore's file-backed huge pages need
 * file offsets aligned like the guest addresses), then the state.
 */
static void layout(struct wtsnap_file *f)
{
	struct wtsnap_hdr *h = &f->hdr;
	uint64_t off, first = 0;

	h->region_off = PAGE;
	h->page_table_off = ALIGN_UP(PAGE + (uint64_t)h->nr_regions *
				     sizeof(struct wtsnap_disk_region), PAGE);
	for (unsigned int i = 0; i < h->nr_regions; i++) {
		f->first_page[i] = first;
		first += f->regions[i].size / PAGE;
	}
	h->nr_pages = first;
	/* Regions are disjoint and below 2^52: none of this overflows. */
	off = h->page_table_off + first * sizeof(struct wtsnap_page_entry);
	for (unsigned int i = 0; i < h->nr_regions; i++) {
		off = ALIGN_UP(off, WTSNAP_DATA_ALIGN);
		f->regions[i].data_off = off;
		off += f->regions[i].size;
	}
	h->state_off = off;
	h->file_size = off;
}

static int write_header(struct wtsnap_file *f)
{
	f->hdr.header_crc = wtsnap_header_crc(&f->hdr, sizeof(f->hdr));
	return pwrite_all(f->fd, &f->hdr, sizeof(f->hdr), 0);
}

static int write_region_table(struct wtsnap_file *f)
{
	size_t len = f->hdr.nr_regions * sizeof(struct wtsnap_disk_region);
	struct wtsnap_disk_region *d = calloc(1, len);
	int ret;

	if (!d)
		return -ENOMEM;
	for (unsigned int i = 0; i < f->hdr.nr_regions; i++) {
		d[i].gpa = f->regions[i].gpa;
		d[i].size = f->regions[i].size;
		d[i].data_off = f->regions[i].data_off;
		d[i].slot = f->regions[i].slot;
		d[i].flags = f->regions[i].flags;
	}
	f->hdr.region_crc = wtsnap_crc32c(0, d, len);
	ret = pwrite_all(f->fd, d, len, f->hdr.region_off);
	free(d);
	return ret;
}

static struct wtsnap_file *alloc_file(unsigned int nr_regions)
{
	struct wtsnap_file *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->fd = -1;
	f->regions = calloc(nr_regions, sizeof(*f->regions));
	f->first_page = calloc(nr_regions, sizeof(*f->first_page));
	if (!f->regions || !f->first_page) {
		free(f->regions);
		free(f->first_page);
		free(f);
		return NULL;
	}
	return f;
}

/* The page table, from the file: writable and shared for a writer. */
static int map_page_table(struct wtsnap_file *f, int prot)
{
	void *p;

	f->pages_len = f->hdr.nr_pages * sizeof(struct wtsnap_page_entry);
	p = mmap(NULL, f->pages_len, prot, MAP_SHARED, f->fd, f->hdr.page_table_off);
	if (p == MAP_FAILED)
		return -errno;
	f->pages = p;
	return 0;
}

static int create_file(struct wtsnap_file *f, int fd)
{
	int ret, fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return -errno;
	if ((fl & O_ACCMODE) != O_RDWR)
		return -EACCES;		/* the page table is mapped shared */
	f->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (f->fd < 0)
		return -errno;
	/* Old contents out, then the whole layout as holes. */
	if (ftruncate(f->fd, 0) || ftruncate(f->fd, f->hdr.state_off))
		return errno == EINVAL ? -EFBIG : -errno;
	/* Blocks for the mapped table now: ENOSPC here, not SIGBUS later. */
	if (fallocate(f->fd, 0, f->hdr.page_table_off,
		      f->hdr.nr_pages * sizeof(struct wtsnap_page_entry)) &&
	    errno != EOPNOTSUPP)
		return -errno;
	ret = write_region_table(f);
	if (!ret)
		ret = map_page_table(f, PROT_READ | PROT_WRITE);
	if (!ret)
		ret = write_header(f);	/* the unfinished one */
	return ret;
}

WT_API int wtsnap_file_create(int fd, const struct wtsnap_region *regions,
			      unsigned int nr_regions, unsigned int nr_vcpus,
			      struct wtsnap_file **out)
{
	struct wtsnap_file *f;
	int ret;

	if (!regions || !nr_regions || !out)
		return -EINVAL;
	if (nr_regions > WTSNAP_MAX_REGIONS || nr_vcpus > WTSNAP_MAX_VCPUS)
		return -E2BIG;
	f = alloc_file(nr_regions);
	if (!f)
		return -ENOMEM;
	f->writer = true;
	memcpy(f->regions, regions, nr_regions * sizeof(*regions));
	memcpy(f->hdr.magic, WTSNAP_MAGIC, sizeof(f->hdr.magic));
	f->hdr.major = WTSNAP_VERSION_MAJOR;
	f->hdr.minor = WTSNAP_VERSION_MINOR;
	f->hdr.header_size = sizeof(f->hdr);
	f->hdr.page_size = PAGE;
	f->hdr.nr_vcpus = nr_vcpus;
	f->hdr.nr_regions = nr_regions;
	ret = check_regions(f->regions, nr_regions);
	if (!ret) {
		layout(f);
		ret = create_file(f, fd);
	}
	if (ret) {
		wtsnap_file_close(f);
		return ret;
	}
	f->state_end = f->hdr.state_off;
	*out = f;
	return 0;
}

/* The writer's state: -EBADF if not writable, a sticky error, or 0. */
static int writer_ok(struct wtsnap_file *f)
{
	if (!f || !f->writer || __atomic_load_n(&f->finished, __ATOMIC_ACQUIRE))
		return -EBADF;
	return __atomic_load_n(&f->error, __ATOMIC_RELAXED);
}

static void set_error(struct wtsnap_file *f, int err)
{
	int zero = 0;

	__atomic_compare_exchange_n(&f->error, &zero, err, false,
				    __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

static bool claim(struct wtsnap_page_entry *e)
{
	uint32_t absent = WTSNAP_PAGE_ABSENT;

	return __atomic_compare_exchange_n(&e->state, &absent, WTSNAP_PAGE_WRITING,
					   false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
}

/* Write claimed pages [@e, @e + @n), then publish them or give them back. */
static int store_run(struct wtsnap_file *f, struct wtsnap_page_entry *e,
		     const uint8_t *buf, uint64_t n, uint64_t off)
{
	int ret = pwrite_all(f->fd, buf, n * PAGE, off);

	for (uint64_t i = 0; i < n; i++) {
		if (!ret)
			e[i].crc = wtsnap_crc32c(0, buf + i * PAGE, PAGE);
		/* Release: the CRC (and the data) before the state. */
		__atomic_store_n(&e[i].state, ret ? WTSNAP_PAGE_ABSENT :
				 WTSNAP_PAGE_PRESENT, __ATOMIC_RELEASE);
	}
	if (ret) {
		set_error(f, ret);
		return ret;
	}
	__atomic_add_fetch(&f->nr_present, n, __ATOMIC_RELAXED);
	return 0;
}

WT_API int64_t wtsnap_file_write_pages(struct wtsnap_file *f, uint64_t gpa,
				       const void *buf, uint64_t nr_pages)
{
	const struct wtsnap_region *r;
	struct wtsnap_page_entry *e;
	uint64_t first, done = 0, i = 0;
	int ret = writer_ok(f), idx;

	if (ret)
		return ret;
	if (gpa % PAGE || !nr_pages || !buf)
		return -EINVAL;
	idx = find_region(f, gpa);
	if (idx < 0)
		return idx;
	r = &f->regions[idx];
	first = (gpa - r->gpa) / PAGE;
	if (nr_pages > r->size / PAGE - first)
		return -EINVAL;
	e = &f->pages[f->first_page[idx] + first];

	/* Claim runs of pages nobody has, write each with one pwrite(). */
	while (i < nr_pages) {
		uint64_t j = i;

		while (j < nr_pages && claim(&e[j]))
			j++;
		if (j > i) {
			ret = store_run(f, &e[i], (const uint8_t *)buf + i * PAGE,
					j - i, r->data_off + (first + i) * PAGE);
			if (ret)
				return ret;
			done += j - i;
		}
		i = j + 1;	/* j is someone else's, or the end */
	}
	return done;
}

WT_API int wtsnap_file_write_page(struct wtsnap_file *f, uint64_t gpa,
				  const void *page)
{
	int64_t ret = wtsnap_file_write_pages(f, gpa, page, 1);

	return ret == 1 ? 0 : ret == 0 ? -EEXIST : (int)ret;
}

WT_API int wtsnap_file_add_state(struct wtsnap_file *f, uint32_t type, uint32_t vcpu,
				 const void *data, size_t size)
{
	struct wtsnap_record_hdr rh = { .type = type, .vcpu = vcpu, .size = size };
	uint64_t len, off;
	uint8_t *buf;
	int ret = writer_ok(f);

	if (ret)
		return ret;
	if (size > WTSNAP_MAX_RECORD)
		return -E2BIG;
	if ((!data && size) || check_record(f->hdr.nr_vcpus, type, vcpu, data, size))
		return -EINVAL;

	/* One pwrite() of header, payload and zero padding. */
	len = sizeof(rh) + ALIGN_UP(size, 8);
	buf = calloc(1, len);
	if (!buf)
		return -ENOMEM;
	rh.crc = record_crc(&rh, data);
	memcpy(buf, &rh, sizeof(rh));
	if (size)
		memcpy(buf + sizeof(rh), data, size);
	off = __atomic_fetch_add(&f->state_end, len, __ATOMIC_RELAXED);
	ret = pwrite_all(f->fd, buf, len, off);
	free(buf);
	if (ret) {
		set_error(f, ret);	/* a hole in the records */
		return ret;
	}
	__atomic_add_fetch(&f->nr_records, 1, __ATOMIC_RELAXED);
	return 0;
}

/* CRC32C of the state section, read back: records land in any order. */
static int state_crc(struct wtsnap_file *f, uint32_t *crc)
{
	uint64_t off = f->hdr.state_off, end = f->hdr.file_size;
	void *buf = malloc(VERIFY_CHUNK);
	int ret = 0;

	if (!buf)
		return -ENOMEM;
	*crc = 0;
	while (off < end && !ret) {
		size_t n = end - off < VERIFY_CHUNK ? end - off : VERIFY_CHUNK;

		ret = pread_all(f->fd, buf, n, off);
		*crc = wtsnap_crc32c(*crc, buf, n);
		off += n;
	}
	free(buf);
	return ret;
}

static int sync_file(struct wtsnap_file *f, unsigned int flags)
{
	return flags & WTSNAP_FINISH_SYNC && fsync(f->fd) ? -errno : 0;
}

WT_API int wtsnap_file_finish(struct wtsnap_file *f, unsigned int flags)
{
	struct wtsnap_hdr *h;
	int ret = writer_ok(f);

	if (ret)
		return ret;
	if (flags & ~WTSNAP_FINISH_SYNC)
		return -EINVAL;
	if (__atomic_load_n(&f->nr_present, __ATOMIC_ACQUIRE) != f->hdr.nr_pages)
		return -ENODATA;

	h = &f->hdr;
	h->page_table_crc = wtsnap_crc32c(0, f->pages, f->pages_len);
	h->file_size = __atomic_load_n(&f->state_end, __ATOMIC_RELAXED);
	h->state_size = h->file_size - h->state_off;
	h->nr_records = __atomic_load_n(&f->nr_records, __ATOMIC_RELAXED);
	ret = state_crc(f, &h->state_crc);
	/* Everything on disk before the header that says it is. */
	if (!ret)
		ret = sync_file(f, flags);
	if (!ret) {
		h->flags |= WTSNAP_HDR_COMPLETE;
		ret = write_header(f);
	}
	if (!ret)
		ret = sync_file(f, flags);
	if (ret) {
		h->flags &= ~WTSNAP_HDR_COMPLETE;
		set_error(f, ret);
		return ret;
	}
	__atomic_store_n(&f->finished, 1, __ATOMIC_RELEASE);
	return 0;
}

WT_API void wtsnap_file_close(struct wtsnap_file *f)
{
	if (!f)
		return;
	if (f->pages)
		munmap(f->pages, f->pages_len);
	if (f->fd >= 0)
		close(f->fd);
	free(f->recs);
	free(f->state);
	free(f->regions);
	free(f->first_page);
	free(f);
}

/* ---- Reader ---- */

/* The header: -ENOEXEC, -EOPNOTSUPP, -ENODATA or -EBADMSG if unusable. */
static int read_header(struct wtsnap_file *f, unsigned int flags)
{
	uint8_t buf[PAGE];
	struct wtsnap_hdr *h = &f->hdr;
	ssize_t n;

	do
		n = pread(f->fd, buf, sizeof(buf), 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if (n < (ssize_t)sizeof(h->magic) || memcmp(buf, WTSNAP_MAGIC, sizeof(h->magic)))
		return -ENOEXEC;
	if (n < WTSNAP_HDR_SIZE)
		return -EBADMSG;
	memcpy(h, buf, sizeof(*h));
	/*
	 * The prefix up to header_crc is the same in every version, so the
	 * CRC can be checked first; then whatever follows is this major's,
	 * and a newer minor's header may only be longer.
	 */
	if (h->header_size < WTSNAP_HDR_CRC_OFF + 4 || h->header_size > n ||
	    wtsnap_header_crc(buf, h->header_size) != h->header_crc)
		return -EBADMSG;
	if (h->major != WTSNAP_VERSION_MAJOR)
		return -EOPNOTSUPP;
	if (h->header_size < WTSNAP_HDR_SIZE)
		return -EBADMSG;
	if (h->page_size != PAGE)
		return -EOPNOTSUPP;
	if (!(h->flags & WTSNAP_HDR_COMPLETE) && !(flags & WTSNAP_OPEN_PARTIAL))
		return -ENODATA;
	return 0;
}

/* The header's numbers, before anything is read or allocated with them. */
static int check_layout(const struct wtsnap_hdr *h, uint64_t file_size, bool complete)
{
	uint64_t pt_end;

	if (!h->nr_regions || h->nr_regions > WTSNAP_MAX_REGIONS ||
	    h->nr_vcpus > WTSNAP_MAX_VCPUS || !h->nr_pages)
		return -EBADMSG;
	/* Offsets within the file first: then the sums cannot overflow. */
	if (h->region_off > file_size || h->page_table_off > file_size ||
	    h->state_off > file_size)
		return -EBADMSG;
	if (h->region_off < PAGE || h->region_off % 8 ||
	    h->region_off + (uint64_t)h->nr_regions * sizeof(struct wtsnap_disk_region) >
	    h->page_table_off)
		return -EBADMSG;
	if (h->page_table_off % PAGE || h->state_off % PAGE ||
	    h->nr_pages > (file_size - h->page_table_off) / sizeof(struct wtsnap_page_entry))
		return -EBADMSG;
	pt_end = h->page_table_off + h->nr_pages * sizeof(struct wtsnap_page_entry);
	if (pt_end > h->state_off)
		return -EBADMSG;
	if (complete && (h->file_size != file_size || h->state_size > file_size ||
			 h->state_off + h->state_size != file_size))
		return -EBADMSG;
	return 0;
}

/*
 * The memory table: regions sorted by gpa, their data in the same order
 * between the page table and the state section, the pages adding up.
 */
static int read_regions(struct wtsnap_file *f, bool complete)
{
	const struct wtsnap_hdr *h = &f->hdr;
	size_t len = h->nr_regions * sizeof(struct wtsnap_disk_region);
	struct wtsnap_disk_region *d = malloc(len);
	uint64_t pages = 0, data_end;
	int ret;

	if (!d)
		return -ENOMEM;
	ret = pread_all(f->fd, d, len, h->region_off);
	if (!ret && complete && wtsnap_crc32c(0, d, len) != h->region_crc)
		ret = -EBADMSG;
	data_end = h->page_table_off + h->nr_pages * sizeof(struct wtsnap_page_entry);
	for (unsigned int i = 0; i < h->nr_regions && !ret; i++) {
		struct wtsnap_region *r = &f->regions[i];

		*r = (struct wtsnap_region){ .gpa = d[i].gpa, .size = d[i].size,
			.slot = d[i].slot, .flags = d[i].flags, .data_off = d[i].data_off };
		f->first_page[i] = pages;
		pages += r->size / PAGE;
		if (!r->size || (r->gpa | r->size | r->data_off) % PAGE ||
		    r->gpa + r->size < r->gpa || r->data_off < data_end ||
		    r->data_off > h->state_off || r->size > h->state_off - r->data_off ||
		    (i && r->gpa < r[-1].gpa + r[-1].size))
			ret = -EBADMSG;
		data_end = r->data_off + r->size;
	}
	if (!ret && pages != h->nr_pages)
		ret = -EBADMSG;
	free(d);
	return ret;
}

/* The page table: unchanged, and in a complete file every page present. */
static int read_page_table(struct wtsnap_file *f, bool complete, uint64_t *present)
{
	int ret = map_page_table(f, PROT_READ);

	if (ret)
		return ret;
	if (complete && wtsnap_crc32c(0, f->pages, f->pages_len) != f->hdr.page_table_crc)
		return -EBADMSG;
	*present = 0;
	for (uint64_t i = 0; i < f->hdr.nr_pages; i++)
		*present += f->pages[i].state == WTSNAP_PAGE_PRESENT;
	return complete && *present != f->hdr.nr_pages ? -EBADMSG : 0;
}

static int add_rec(struct wtsnap_file *f, const struct wtsnap_record_hdr *rh)
{
	if (f->nr_recs == f->cap_recs) {
		uint32_t cap = f->cap_recs ? 2 * f->cap_recs : 64;
		struct rec *n = realloc(f->recs, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		f->recs = n;
		f->cap_recs = cap;
	}
	f->recs[f->nr_recs++] = (struct rec){ rh->type, rh->vcpu, rh->size, rh + 1 };
	return 0;
}

/*
 * Walk the records.  In a complete file every one must check out and
 * there must be exactly nr_records; in a partial one the walk stops at
 * the first that does not (the writer's last, torn, or not yet written).
 */
static int parse_records(struct wtsnap_file *f, uint64_t len, bool complete)
{
	uint8_t *p = f->state;
	uint64_t off = 0, count = 0;
	int ret;

	while (off < len) {
		struct wtsnap_record_hdr *rh = (void *)(p + off);
		uint64_t next;

		if (len - off < sizeof(*rh) || rh->size > WTSNAP_MAX_RECORD ||
		    rh->size > len - off - sizeof(*rh) || record_crc(rh, rh + 1) != rh->crc)
			return complete ? -EBADMSG : 0;
		ret = check_record(f->hdr.nr_vcpus, rh->type, rh->vcpu, rh + 1, rh->size);
		if (ret == -EINVAL)
			return -EBADMSG;
		if (ret < 0)
			return ret;	/* unknown, mandatory */
		if (ret == 1)
			f->nr_skipped++;
		else if (add_rec(f, rh))
			return -ENOMEM;
		count++;
		next = off + sizeof(*rh) + ALIGN_UP((uint64_t)rh->size, 8);
		if (next > len && complete)
			return -EBADMSG;
		off = next;
	}
	return complete && count != f->hdr.nr_records ? -EBADMSG : 0;
}

static int read_state(struct wtsnap_file *f, uint64_t file_size, bool complete)
{
	const struct wtsnap_hdr *h = &f->hdr;
	uint64_t len = complete ? h->state_size : file_size - h->state_off;
	int ret;

	f->state = malloc(len ? len : 1);
	if (!f->state)
		return -ENOMEM;
	ret = pread_all(f->fd, f->state, len, h->state_off);
	if (ret)
		return ret;
	if (complete && wtsnap_crc32c(0, f->state, len) != h->state_crc)
		return -EBADMSG;
	return parse_records(f, len, complete);
}

static int open_file(struct wtsnap_file *f, unsigned int flags)
{
	struct stat st;
	bool complete;
	uint64_t present = 0;
	int ret = read_header(f, flags);

	if (ret)
		return ret;
	if (fstat(f->fd, &st))
		return -errno;
	complete = f->hdr.flags & WTSNAP_HDR_COMPLETE;
	ret = check_layout(&f->hdr, st.st_size, complete);
	if (ret)
		return ret;
	/* nr_regions is bounded now: room for the regions. */
	f->regions = calloc(f->hdr.nr_regions, sizeof(*f->regions));
	f->first_page = calloc(f->hdr.nr_regions, sizeof(*f->first_page));
	if (!f->regions || !f->first_page)
		return -ENOMEM;
	ret = read_regions(f, complete);
	if (!ret)
		ret = read_page_table(f, complete, &present);
	if (!ret)
		ret = read_state(f, st.st_size, complete);
	f->nr_present = present;
	return ret;
}

WT_API int wtsnap_file_open(int fd, unsigned int flags, struct wtsnap_file **out)
{
	struct wtsnap_file *f;
	int ret;

	if (!out || flags & ~WTSNAP_OPEN_PARTIAL)
		return -EINVAL;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	ret = f->fd < 0 ? -errno : open_file(f, flags);
	if (ret) {
		wtsnap_file_close(f);
		return ret;
	}
	*out = f;
	return 0;
}

WT_API int wtsnap_file_info(const struct wtsnap_file *f, struct wtsnap_info *info)
{
	if (!f || !info)
		return -EINVAL;
	*info = (struct wtsnap_info){
		.major = f->hdr.major,
		.minor = f->hdr.minor,
		.page_size = f->hdr.page_size,
		.complete = !!(f->hdr.flags & WTSNAP_HDR_COMPLETE),
		.nr_vcpus = f->hdr.nr_vcpus,
		.nr_regions = f->hdr.nr_regions,
		.nr_records = f->writer ? __atomic_load_n(&f->nr_records, __ATOMIC_RELAXED) :
					  f->nr_recs,
		.nr_skipped = f->nr_skipped,
		.nr_pages = f->hdr.nr_pages,
		.nr_present = __atomic_load_n(&f->nr_present, __ATOMIC_RELAXED),
		.file_size = f->hdr.flags & WTSNAP_HDR_COMPLETE ? f->hdr.file_size : 0,
	};
	return 0;
}

WT_API int wtsnap_file_regions(const struct wtsnap_file *f,
			       const struct wtsnap_region **regions)
{
	if (!f || !regions)
		return -EINVAL;
	*regions = f->regions;
	return f->hdr.nr_regions;
}

static int reader_ok(const struct wtsnap_file *f)
{
	return !f ? -EINVAL : f->writer ? -EBADF : 0;
}

WT_API int wtsnap_file_next_state(const struct wtsnap_file *f, unsigned int *pos,
				  uint32_t type, uint32_t vcpu, struct wtsnap_record *rec)
{
	int ret = reader_ok(f);

	if (ret)
		return ret;
	if (!pos || !rec)
		return -EINVAL;
	for (uint32_t i = *pos; i < f->nr_recs; i++) {
		const struct rec *r = &f->recs[i];

		if ((type != WTSNAP_STATE_ANY && r->type != type) ||
		    (vcpu != WTSNAP_VCPU_ANY && r->vcpu != vcpu))
			continue;
		*rec = (struct wtsnap_record){ r->type, r->vcpu, r->size, r->data };
		*pos = i + 1;
		return 1;
	}
	if (*pos < f->nr_recs)
		*pos = f->nr_recs;
	return 0;
}

WT_API int wtsnap_file_read_page(const struct wtsnap_file *f, uint64_t gpa, void *buf)
{
	const struct wtsnap_page_entry *e;
	const struct wtsnap_region *r;
	int ret = reader_ok(f), idx;

	if (ret)
		return ret;
	if (gpa % PAGE || !buf)
		return -EINVAL;
	idx = find_region(f, gpa);
	if (idx < 0)
		return idx;
	r = &f->regions[idx];
	e = &f->pages[f->first_page[idx] + (gpa - r->gpa) / PAGE];
	if (e->state != WTSNAP_PAGE_PRESENT)
		return -ENODATA;
	ret = pread_all(f->fd, buf, PAGE, r->data_off + (gpa - r->gpa));
	if (ret)
		return ret;
	return wtsnap_crc32c(0, buf, PAGE) == e->crc ? 0 : -EBADMSG;
}

WT_API int wtsnap_file_map_region(const struct wtsnap_file *f, unsigned int index,
				  void **addr)
{
	const struct wtsnap_region *r;
	void *p;
	int ret = reader_ok(f);

	if (ret)
		return ret;
	if (index >= f->hdr.nr_regions || !addr)
		return -EINVAL;
	if (!(f->hdr.flags & WTSNAP_HDR_COMPLETE))
		return -ENODATA;
	if (sysconf(_SC_PAGESIZE) != (long)PAGE)
		return -EOPNOTSUPP;	/* the data offsets are 4 KiB aligned */
	r = &f->regions[index];
	p = mmap(NULL, r->size, PROT_READ | PROT_WRITE, MAP_PRIVATE, f->fd, r->data_off);
	if (p == MAP_FAILED)
		return -errno;
	*addr = p;
	return 0;
}

/* One region's pages, a chunk at a time; the first of each problem kept. */
static int verify_region(const struct wtsnap_file *f, unsigned int idx, uint8_t *buf,
			 uint64_t *bad, uint64_t *absent)
{
	const struct wtsnap_region *r = &f->regions[idx];
	const struct wtsnap_page_entry *e = &f->pages[f->first_page[idx]];

	for (uint64_t off = 0; off < r->size; off += VERIFY_CHUNK) {
		uint64_t n = r->size - off < VERIFY_CHUNK ? r->size - off : VERIFY_CHUNK;
		int ret = pread_all(f->fd, buf, n, r->data_off + off);

		if (ret)
			return ret;
		for (uint64_t i = 0; i < n / PAGE; i++, e++) {
			uint64_t gpa = r->gpa + off + i * PAGE;

			if (e->state != WTSNAP_PAGE_PRESENT) {
				if (*absent == UINT64_MAX)
					*absent = gpa;
			} else if (wtsnap_crc32c(0, buf + i * PAGE, PAGE) != e->crc &&
				   *bad == UINT64_MAX) {
				*bad = gpa;
			}
		}
	}
	return 0;
}

WT_API int wtsnap_file_verify(const struct wtsnap_file *f, uint64_t *bad_gpa)
{
	uint64_t bad = UINT64_MAX, absent = UINT64_MAX;
	uint8_t *buf;
	int ret = reader_ok(f);

	if (ret)
		return ret;
	buf = malloc(VERIFY_CHUNK);
	if (!buf)
		return -ENOMEM;
	for (unsigned int i = 0; i < f->hdr.nr_regions && !ret; i++)
		ret = verify_region(f, i, buf, &bad, &absent);
	free(buf);
	if (ret)
		return ret;
	if (bad != UINT64_MAX || absent != UINT64_MAX) {
		if (bad_gpa)
			*bad_gpa = bad != UINT64_MAX ? bad : absent;
		return bad != UINT64_MAX ? -EBADMSG : -ENODATA;
	}
	return 0;
}
