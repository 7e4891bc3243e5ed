/* SPDX-License-Identifier: MIT */
/*
 * The snapshot file's on-disk layout, as Documentation/wtrack-snapshot-format.rst
 * describes it, and CRC32C.  Internal: snapfile.c and the host tests, which
 * craft damaged and future files with it, include it; users see only
 * <wtsnap.h>.
 *
 * Every field is little-endian.  So are the only hosts the format is for
 * (x86-64), so the structures are read and written as they are.
 */
#ifndef WTSNAP_FMT_H
#define WTSNAP_FMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the snapshot format is little-endian, and so must be the host"
#endif

#define WTSNAP_MAGIC		"KVMWTSNP"	/* 8 bytes, no NUL */
#define WTSNAP_HDR_SIZE		128		/* version 1.0's header */
#define WTSNAP_HDR_CRC_OFF	16		/* offsetof(header_crc) */
#define WTSNAP_DATA_ALIGN	(2ULL << 20)	/* region data, for huge pages */

/* wtsnap_hdr.flags */
#define WTSNAP_HDR_COMPLETE	(1U << 0)

/**
 * struct wtsnap_hdr - the file header, at offset 0
 *
 * Fields up to @header_crc keep their place in every version; the rest
 * is version 1's.  See the format document for each field.
 */
struct wtsnap_hdr {
	char magic[8];
	uint16_t major;
	uint16_t minor;
	uint32_t header_size;
	uint32_t header_crc;
	uint32_t page_size;
	uint32_t flags;
	uint32_t nr_vcpus;
	uint32_t nr_regions;
	uint32_t nr_records;
	uint64_t nr_pages;
	uint64_t region_off;
	uint64_t page_table_off;
	uint64_t state_off;
	uint64_t state_size;
	uint64_t file_size;
	uint32_t region_crc;
	uint32_t page_table_crc;
	uint32_t state_crc;
	uint32_t reserved0;
	uint64_t reserved[3];
};

/* One entry of the memory table. */
struct wtsnap_disk_region {
	uint64_t gpa;
	uint64_t size;
	uint64_t data_off;
	uint32_t slot;
	uint32_t flags;
	uint64_t reserved[2];
};

/* wtsnap_page_entry.state */
#define WTSNAP_PAGE_ABSENT	0
#define WTSNAP_PAGE_PRESENT	1
#define WTSNAP_PAGE_WRITING	2	/* claimed by a writer, not there yet */

/* One entry of the page table: one per guest page, in region order. */
struct wtsnap_page_entry {
	uint32_t crc;
	uint32_t state;
};

/*
 * A state record's header; the payload follows, padded with zeroes to a
 * multiple of 8 bytes.  @crc covers the first 12 bytes and the payload.
 */
struct wtsnap_record_hdr {
	uint32_t type;
	uint32_t vcpu;
	uint32_t size;
	uint32_t crc;
};

#define WTSNAP_RECORD_CRC_LEN	offsetof(struct wtsnap_record_hdr, crc)

_Static_assert(sizeof(struct wtsnap_hdr) == WTSNAP_HDR_SIZE, "header size");
_Static_assert(offsetof(struct wtsnap_hdr, header_crc) == WTSNAP_HDR_CRC_OFF, "crc");
_Static_assert(offsetof(struct wtsnap_hdr, nr_pages) == 40, "header layout");
_Static_assert(offsetof(struct wtsnap_hdr, region_crc) == 88, "header layout");
_Static_assert(sizeof(struct wtsnap_disk_region) == 48, "region size");
_Static_assert(sizeof(struct wtsnap_page_entry) == 8, "page entry size");
_Static_assert(sizeof(struct wtsnap_record_hdr) == 16, "record header size");

/*
 * CRC32C (Castagnoli, reflected polynomial 0x82f63b78).  @crc is the
 * value returned for the data before (0 to start), so that
 * crc(crc(0, a), b) == crc(0, a b), as with zlib's crc32().
 */
uint32_t wtsnap_crc32c(uint32_t crc, const void *buf, size_t len);
uint32_t wtsnap_crc32c_sw(uint32_t crc, const void *buf, size_t len);
/* The SSE4.2 instruction; only when wtsnap_crc32c_hw_ok(). */
uint32_t wtsnap_crc32c_hw(uint32_t crc, const void *buf, size_t len);
bool wtsnap_crc32c_hw_ok(void);

/* The header's CRC32C: over its header_size bytes, header_crc as 0. */
uint32_t wtsnap_header_crc(const void *hdr, uint32_t header_size);

#endif /* WTSNAP_FMT_H */
