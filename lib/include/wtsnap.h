/* SPDX-License-Identifier: MIT */
/*
 * libwtrack: the lazy snapshot's file (Documentation/wtrack-snapshot-format.rst).
 *
 * A writer lays the file out once, from the VM's memory regions: every
 * guest page has a fixed place, so copier threads and copy-before-write
 * handlers store pages in any order and from any thread, each with one
 * pwrite().  vCPU and VM state goes in as typed records holding KVM's own
 * structures.  wtsnap_file_finish() writes the final header; until then
 * readers refuse the file, so a snapshot cut short is never restored.
 *
 * A reader checks the header, the tables and the state records when it
 * opens the file, and the pages on request (wtsnap_file_verify()).  A
 * region maps straight from the file, MAP_PRIVATE, as a restored guest's
 * memory.
 *
 * Every function returns 0 or a count on success and a negative errno on
 * failure; none of them sets errno as part of its interface.
 */
#ifndef WTSNAP_H
#define WTSNAP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct wtsnap_file;
struct kvm_run;

#define WTSNAP_VERSION_MAJOR	1	/* readers refuse other majors */
#define WTSNAP_VERSION_MINOR	0
#define WTSNAP_PAGE_SIZE	4096U
#define WTSNAP_MAX_REGIONS	65536U
#define WTSNAP_MAX_VCPUS	4096U
#define WTSNAP_MAX_RECORD	(64U << 20)	/* bytes of one record's payload */

/* The vcpu of a record: a vCPU's index, or one of these. */
#define WTSNAP_VCPU_VM		0xffffffffU	/* VM-wide state */
#define WTSNAP_VCPU_ANY		0xfffffffeU	/* wtsnap_file_next_state(): any */

/*
 * Bits of a record type.  A reader that does not know a type skips its
 * records if it has WTSNAP_STATE_OPTIONAL and refuses the file otherwise.
 * Types with WTSNAP_STATE_VMM belong to the VMM (device models and the
 * like): the library stores and returns them without looking inside.
 */
#define WTSNAP_STATE_OPTIONAL	(1U << 31)
#define WTSNAP_STATE_VMM	(1U << 30)

/**
 * enum wtsnap_state_type - the record types the library knows
 * @WTSNAP_STATE_ANY: not a type: wtsnap_file_next_state() matches any.
 * @WTSNAP_STATE_REGS: struct kvm_regs (KVM_GET_REGS).
 * @WTSNAP_STATE_SREGS: struct kvm_sregs (KVM_GET_SREGS).
 * @WTSNAP_STATE_SREGS2: struct kvm_sregs2 (KVM_GET_SREGS2).
 * @WTSNAP_STATE_FPU: struct kvm_fpu (KVM_GET_FPU).
 * @WTSNAP_STATE_XSAVE: struct kvm_xsave as KVM_GET_XSAVE2 fills it: at
 *	least 4096 bytes, KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2) of them.
 * @WTSNAP_STATE_XCRS: struct kvm_xcrs (KVM_GET_XCRS).
 * @WTSNAP_STATE_MSRS: struct kvm_msrs followed by its nmsrs entries
 *	(KVM_GET_MSRS); a vCPU may have several.
 * @WTSNAP_STATE_LAPIC: struct kvm_lapic_state (KVM_GET_LAPIC).
 * @WTSNAP_STATE_VCPU_EVENTS: struct kvm_vcpu_events.
 * @WTSNAP_STATE_DEBUGREGS: struct kvm_debugregs.
 * @WTSNAP_STATE_NESTED: struct kvm_nested_state and its data, the size
 *	bytes that KVM_GET_NESTED_STATE reports in it.
 * @WTSNAP_STATE_MP_STATE: struct kvm_mp_state (KVM_GET_MP_STATE).
 * @WTSNAP_STATE_CPUID: struct kvm_cpuid2 followed by its nent entries.
 * @WTSNAP_STATE_IRQCHIP: struct kvm_irqchip (KVM_GET_IRQCHIP), one record
 *	per chip_id: PIC master, PIC slave, IOAPIC.
 * @WTSNAP_STATE_PIT2: struct kvm_pit_state2 (KVM_GET_PIT2).
 * @WTSNAP_STATE_CLOCK: struct kvm_clock_data (KVM_GET_CLOCK).
 *
 * Types below 0x100 are a vCPU's state: their records name a vCPU index
 * below the file's vCPU count.  Types from 0x100 are the VM's: their
 * records name WTSNAP_VCPU_VM.  The library checks each payload's size
 * against the structure, with the sizes of the <linux/kvm.h> it was built
 * with.  None of these types is optional.
 */
enum wtsnap_state_type {
	WTSNAP_STATE_ANY		= 0,
	WTSNAP_STATE_REGS		= 1,
	WTSNAP_STATE_SREGS		= 2,
	WTSNAP_STATE_SREGS2		= 3,
	WTSNAP_STATE_FPU		= 4,
	WTSNAP_STATE_XSAVE		= 5,
	WTSNAP_STATE_XCRS		= 6,
	WTSNAP_STATE_MSRS		= 7,
	WTSNAP_STATE_LAPIC		= 8,
	WTSNAP_STATE_VCPU_EVENTS	= 9,
	WTSNAP_STATE_DEBUGREGS		= 10,
	WTSNAP_STATE_NESTED		= 11,
	WTSNAP_STATE_MP_STATE		= 12,
	WTSNAP_STATE_CPUID		= 13,
	WTSNAP_STATE_IRQCHIP		= 0x100,
	WTSNAP_STATE_PIT2		= 0x101,
	WTSNAP_STATE_CLOCK		= 0x102,
};

/* wtsnap_file_open() flags */
#define WTSNAP_OPEN_PARTIAL	(1U << 0)	/* accept an unfinished file */

/* wtsnap_file_finish() flags */
#define WTSNAP_FINISH_SYNC	(1U << 0)	/* fsync() before and after */

/**
 * struct wtsnap_region - a guest memory region of the snapshot
 * @gpa: guest-physical address of its first byte, page aligned.
 * @size: length in bytes, a non-zero multiple of WTSNAP_PAGE_SIZE.
 * @slot: the KVM memslot it was (KVM_SET_USER_MEMORY_REGION's slot),
 *	stored for the VMM; unique in a file.
 * @flags: the memslot's KVM_MEM_* flags, stored for the VMM.
 * @data_off: where its pages start in the file, page aligned: filled by
 *	the library, ignored by wtsnap_file_create().
 *
 * Regions do not overlap.  The library keeps them sorted by @gpa.
 */
struct wtsnap_region {
	uint64_t gpa;
	uint64_t size;
	uint32_t slot;
	uint32_t flags;
	uint64_t data_off;
};

/**
 * struct wtsnap_info - what a snapshot file holds
 * @major: format version of the file, major.
 * @minor: format version of the file, minor.
 * @page_size: WTSNAP_PAGE_SIZE.
 * @complete: 1 if the writer finished the file, else 0 (a writer handle
 *	before wtsnap_file_finish(), or a reader with WTSNAP_OPEN_PARTIAL).
 * @nr_vcpus: vCPUs the state records may name.
 * @nr_regions: memory regions.
 * @nr_records: state records that wtsnap_file_next_state() returns; for
 *	a writer, the records added so far.
 * @nr_skipped: records of unknown optional types a reader skipped.
 * @resv: zero.
 * @nr_pages: guest pages in all the regions.
 * @nr_present: pages written (a writer) or found written (a reader).
 * @file_size: the file's size as its header says (0 before the finish).
 */
struct wtsnap_info {
	uint16_t major;
	uint16_t minor;
	uint32_t page_size;
	uint32_t complete;
	uint32_t nr_vcpus;
	uint32_t nr_regions;
	uint32_t nr_records;
	uint32_t nr_skipped;
	uint32_t resv;
	uint64_t nr_pages;
	uint64_t nr_present;
	uint64_t file_size;
};

/**
 * struct wtsnap_record - a state record, as a reader returns it
 * @type: a WTSNAP_STATE_* type, or a type of the VMM.
 * @vcpu: the vCPU's index, or WTSNAP_VCPU_VM.
 * @size: the payload's size in bytes.
 * @data: the payload, 8-byte aligned, valid until wtsnap_file_close().
 */
struct wtsnap_record {
	uint32_t type;
	uint32_t vcpu;
	uint32_t size;
	const void *data;
};

/**
 * wtsnap_file_create() - start a snapshot file
 * @fd: a regular file open for reading and writing (O_RDWR); its contents
 *	are discarded.  The library works on a duplicate: the caller may
 *	close @fd at once.  An O_TMPFILE linked once finished keeps a cut
 *	short snapshot from ever having a name.
 * @regions: the guest memory regions, in any order; @data_off is ignored.
 * @nr_regions: how many, 1 to WTSNAP_MAX_REGIONS.
 * @nr_vcpus: how many vCPUs the state may name, up to WTSNAP_MAX_VCPUS.
 * @out: where the writer handle is stored on success.
 *
 * Lays the file out: header, memory table, page table, each region's page
 * data, then the state records as they are added.  The file gets its full
 * size now, as holes, and an unfinished header that readers refuse.
 *
 * Return: 0 on success; -EINVAL if @regions or @out is NULL, @nr_regions
 * is 0, a region is empty, not page aligned or goes beyond 2^52 (x86's
 * largest guest-physical address space); -E2BIG for
 * too many regions or vCPUs; -EEXIST if two regions overlap or share a
 * slot; -EACCES if @fd is not open for reading and writing; -EFBIG if the
 * file would be too large; another negative errno from the file.
 */
int wtsnap_file_create(int fd, const struct wtsnap_region *regions,
		       unsigned int nr_regions, unsigned int nr_vcpus,
		       struct wtsnap_file **out);

/**
 * wtsnap_file_write_page() - store one guest page
 * @f: a writer handle.
 * @gpa: the page's guest-physical address, page aligned.
 * @page: its WTSNAP_PAGE_SIZE bytes.
 *
 * Claims the page, pwrite()s it at its place and records its CRC32C and
 * that it is present.  Safe from any number of threads at once, in any
 * order.  A page is stored once: the first call for it wins, and a later
 * one returns -EEXIST even while the first is still writing.  As the
 * first call read the page before it claimed it, a caller that gets
 * -EEXIST may unprotect the page at once.
 *
 * Return: 0 on success; -EINVAL if @gpa is not page aligned; -ENOENT if
 * it is in no region; -EEXIST if the page was stored or is being stored;
 * -EBADF if @f is not a writer or is finished; the negative errno of a
 * failed write, which also fails every later call (the snapshot is lost).
 */
int wtsnap_file_write_page(struct wtsnap_file *f, uint64_t gpa, const void *page);

/**
 * wtsnap_file_write_pages() - store a run of guest pages
 * @f: a writer handle.
 * @gpa: the first page's guest-physical address, page aligned.
 * @buf: the pages' contents, @nr_pages * WTSNAP_PAGE_SIZE bytes.
 * @nr_pages: how many, at least 1, all in the region of @gpa.
 *
 * wtsnap_file_write_page() for each page, with one pwrite() per run of
 * pages not stored yet: for a background copier.  Pages already stored or
 * being stored are skipped.
 *
 * Return: the number of pages stored by this call (0 if every page was
 * stored already); -EINVAL if @gpa is not page aligned, @nr_pages is 0 or
 * the run leaves @gpa's region; -ENOENT if @gpa is in no region; -EBADF
 * and the errors of a failed write as wtsnap_file_write_page().
 */
int64_t wtsnap_file_write_pages(struct wtsnap_file *f, uint64_t gpa,
				const void *buf, uint64_t nr_pages);

/**
 * wtsnap_file_add_state() - append a state record
 * @f: a writer handle.
 * @type: a WTSNAP_STATE_* type, or a type with WTSNAP_STATE_VMM.
 * @vcpu: the vCPU's index (below the file's vCPU count) for a vCPU type,
 *	WTSNAP_VCPU_VM for a VM type, either for a VMM type.
 * @data: the payload, for the library's types the KVM structure.
 * @size: its size in bytes, at most WTSNAP_MAX_RECORD.
 *
 * Writes the record (header, payload, CRC32C) after the ones before.
 * Safe from several threads at once; the file keeps the records in the
 * order their calls reserved room, which for one thread is call order.
 * A vCPU or the VM may have several records of a type.
 *
 * Return: 0 on success; -EINVAL for a type the library does not know
 * (without WTSNAP_STATE_VMM), a @vcpu that does not fit the type, a @size
 * that does not fit the structure, or a NULL @data with a non-zero @size;
 * -E2BIG if @size is above WTSNAP_MAX_RECORD; -EBADF if @f is not a writer
 * or is finished; the negative errno of a failed write, which also fails
 * every later call.
 */
int wtsnap_file_add_state(struct wtsnap_file *f, uint32_t type, uint32_t vcpu,
			  const void *data, size_t size);

/**
 * wtsnap_file_finish() - make the snapshot file valid
 * @f: a writer handle.
 * @flags: 0, or WTSNAP_FINISH_SYNC to fsync() the pages, tables and
 *	records before the final header and the header after it, so that
 *	the file is complete on disk when the call returns.
 *
 * Checks that every page was stored, then writes the header that marks
 * the file complete, with the counts and the checksums of the tables and
 * the state section.  Must not run while another call on @f does.  On
 * success @f takes no more pages or records; close it.
 *
 * Return: 0 on success; -ENODATA if a page was not stored (store it and
 * call again); -EINVAL for unknown @flags; -EBADF if @f is not a writer
 * or is finished; the error of an earlier failed write; another negative
 * errno from the file.
 */
int wtsnap_file_finish(struct wtsnap_file *f, unsigned int flags);

/**
 * wtsnap_file_close() - release a handle
 * @f: a writer or reader handle, or NULL.
 *
 * Unmaps the tables, closes the library's file descriptor and frees @f.
 * A writer's file that was not finished stays unfinished: readers refuse
 * it.  Mappings made by wtsnap_file_map_region() stay valid.
 */
void wtsnap_file_close(struct wtsnap_file *f);

/**
 * wtsnap_file_open() - open a snapshot file for reading
 * @fd: the file, open for reading.  The library works on a duplicate.
 * @flags: 0, or WTSNAP_OPEN_PARTIAL to accept a file whose writer did not
 *	finish, for inspection: its regions, the pages marked present and
 *	the records up to the first torn one.
 * @out: where the reader handle is stored on success.
 *
 * Checks the magic, the version, the header's CRC, the layout, the
 * memory table, the page table and every state record (the checksums,
 * and the sizes of the types the library knows).  Pages are checked by
 * wtsnap_file_read_page() and wtsnap_file_verify().
 *
 * Return: 0 on success; -ENOEXEC if @fd is not a snapshot file;
 * -EOPNOTSUPP for another major version, another page size or a record
 * type that is neither known nor optional; -ENODATA if the file is not
 * finished (without WTSNAP_OPEN_PARTIAL); -EBADMSG if a checksum does not
 * match or the header, a table or a record is inconsistent (a damaged or
 * truncated file); -EINVAL for bad arguments; another negative errno from
 * the file.
 */
int wtsnap_file_open(int fd, unsigned int flags, struct wtsnap_file **out);

/**
 * wtsnap_file_info() - describe a snapshot file
 * @f: a writer or reader handle.
 * @info: filled with the file's version, counts and state.
 *
 * On a writer, safe while other threads store pages: @info->nr_present
 * tells how far the copy is.
 *
 * Return: 0, or -EINVAL if an argument is NULL.
 */
int wtsnap_file_info(const struct wtsnap_file *f, struct wtsnap_info *info);

/**
 * wtsnap_file_regions() - the memory regions of a snapshot file
 * @f: a writer or reader handle.
 * @regions: set to the array of regions, sorted by gpa, with their
 *	data_off; valid until wtsnap_file_close().
 *
 * Return: the number of regions, or -EINVAL if an argument is NULL.
 */
int wtsnap_file_regions(const struct wtsnap_file *f,
			const struct wtsnap_region **regions);

/**
 * wtsnap_file_next_state() - find the next state record
 * @f: a reader handle.
 * @pos: the iterator: 0 to start from the first record; advanced past the
 *	record returned.
 * @type: the type to look for, or WTSNAP_STATE_ANY.
 * @vcpu: the vCPU index or WTSNAP_VCPU_VM to look for, or WTSNAP_VCPU_ANY.
 * @rec: filled with the record found.
 *
 * Records come in file order.  Those of optional types the library does
 * not know were dropped by wtsnap_file_open().
 *
 * Return: 1 if a record was found, 0 if there is none after *@pos;
 * -EINVAL if an argument is NULL; -EBADF if @f is a writer.
 */
int wtsnap_file_next_state(const struct wtsnap_file *f, unsigned int *pos,
			   uint32_t type, uint32_t vcpu, struct wtsnap_record *rec);

/**
 * wtsnap_file_read_page() - read one page and check it
 * @f: a reader handle.
 * @gpa: the page's guest-physical address, page aligned.
 * @buf: where its WTSNAP_PAGE_SIZE bytes go.
 *
 * Return: 0 on success; -EINVAL if @gpa is not page aligned; -ENOENT if
 * it is in no region; -ENODATA if the page is not in a partial file;
 * -EBADMSG if its CRC32C does not match (@buf holds what the file has);
 * -EBADF if @f is a writer; another negative errno from the file.
 */
int wtsnap_file_read_page(const struct wtsnap_file *f, uint64_t gpa, void *buf);

/**
 * wtsnap_file_map_region() - map a region's pages as guest memory
 * @f: a reader handle of a complete file.
 * @index: the region, an index into wtsnap_file_regions()'s array.
 * @addr: set to the mapping: region size bytes, readable and writable.
 *
 * mmap(MAP_PRIVATE) of the region's page data: the guest of a restore
 * runs on it, its pages read from the file as they are touched, and its
 * writes stay in private copies that never reach the file.  The pages are
 * not checked here; wtsnap_file_verify() does that first if wanted.
 * Release with munmap(*@addr, size); the mapping outlives @f.
 *
 * Return: 0 on success; -EINVAL if @index is out of range or an argument
 * is NULL; -ENODATA if the file is partial; -EOPNOTSUPP if the host's
 * page size is not WTSNAP_PAGE_SIZE; -EBADF if @f is a writer; the
 * negative errno of mmap().
 */
int wtsnap_file_map_region(const struct wtsnap_file *f, unsigned int index,
			   void **addr);

/**
 * wtsnap_file_verify() - check every page against its checksum
 * @f: a reader handle.
 * @bad_gpa: if not NULL, set to the first page that failed, for a
 *	negative return other than -EINVAL and -EBADF and the file's errors.
 *
 * Reads all the page data and compares each present page's CRC32C with
 * the page table's.
 *
 * Return: 0 if every page is present and intact; -EBADMSG if a page's
 * CRC32C does not match; else -ENODATA if a page is missing (a partial
 * file); -EBADF if @f is a writer; -EINVAL if @f is NULL; another
 * negative errno from the file.
 */
int wtsnap_file_verify(const struct wtsnap_file *f, uint64_t *bad_gpa);

/* ---- The snapshot engine ---- */

struct wtsnap;

/**
 * struct wtsnap_vm_region - a memslot of the VM, as the engine sees it
 * @gpa: guest-physical address of its first byte, page aligned.
 * @size: length in bytes, a non-zero multiple of WTSNAP_PAGE_SIZE.
 * @hva: where the VMM maps it (the memslot's userspace_addr).
 * @slot: the memslot's number.
 * @flags: the memslot's KVM_MEM_* flags.
 */
struct wtsnap_vm_region {
	uint64_t gpa;
	uint64_t size;
	void *hva;
	uint32_t slot;
	uint32_t flags;
};

/**
 * struct wtsnap_range - a guest-physical range
 * @gpa: its first byte.
 * @size: its length in bytes.
 */
struct wtsnap_range {
	uint64_t gpa;
	uint64_t size;
};

/**
 * struct wtsnap_vm - the VM to snapshot, described by its VMM
 * @vm_fd: the VM's file descriptor.
 * @nr_vcpus: how many vCPUs it has.
 * @vcpu_fds: their file descriptors, by index.
 * @nr_regions: how many memslots it has.
 * @regions: the memslots; their pages are the snapshot's memory.
 * @pause: stops every vCPU and keeps it out of KVM_RUN until @resume.  A
 *	vCPU that exited to userspace must have re-entered KVM_RUN once (with
 *	immediate_exit set) so that KVM completed the exit's I/O, as for
 *	KVM_GET_REGS in a migration.  Returns 0 or a negative errno.
 * @resume: lets the vCPUs run again.
 * @opaque: passed to @pause and @resume.
 *
 * The engine copies what it needs: the VMM's arrays may go away after
 * wtsnap_open().
 */
struct wtsnap_vm {
	int vm_fd;
	unsigned int nr_vcpus;
	const int *vcpu_fds;
	unsigned int nr_regions;
	const struct wtsnap_vm_region *regions;
	int (*pause)(void *opaque);
	void (*resume)(void *opaque);
	void *opaque;
};

/* struct wtsnap_params.backend */
#define WTSNAP_BACKEND_RING	0	/* kvm-wtrack, ring mode */
#define WTSNAP_BACKEND_EXIT	1	/* kvm-wtrack, exit mode */
#define WTSNAP_BACKEND_STOP	2	/* copy everything while paused */
#define WTSNAP_BACKEND_UFFD	3	/* userfaultfd write-protect */

#define WTSNAP_MAX_COPIERS	64

/**
 * struct wtsnap_params - how the engine snapshots
 * @backend: WTSNAP_BACKEND_*: how guest writes are caught while memory is
 *	copied, or WTSNAP_BACKEND_STOP for a stop-the-world copy.
 *	WTSNAP_BACKEND_UFFD, for comparison, protects the VMM's mapping with
 *	userfaultfd (QEMU background snapshot's mechanism); it needs
 *	anonymous, shmem or hugetlbfs memory, and it sees the VMM's own
 *	writes as well as KVM's.
 * @copiers: background copier threads, 1 to WTSNAP_MAX_COPIERS; 0 for 1.
 * @ring_entries: the ring's size (WTSNAP_BACKEND_RING); 0 for the default.
 * @nr_eager: how many ranges @eager holds.
 * @eager: guest memory that KVM writes on its own and that the engine
 *	cannot find in the vCPUs' state (e.g. a Xen shared info page): it is
 *	copied during the pause and left unprotected.
 * @max_bandwidth: bytes per second the background copiers together copy
 *	at most, as QEMU's migration max-bandwidth, so that they leave the
 *	guest its CPUs; 0 for no limit.  Copies before guest or VMM writes
 *	are not limited: a write waits for them.
 * @resv: must be zero.
 */
struct wtsnap_params {
	unsigned int backend;
	unsigned int copiers;
	unsigned int ring_entries;
	unsigned int nr_eager;
	const struct wtsnap_range *eager;
	uint64_t max_bandwidth;
	uint64_t resv[3];
};

/**
 * struct wtsnap_progress - where a snapshot is
 * @nr_pages: guest pages to copy.
 * @copied: pages copied so far, by all of the below.
 * @by_copier: pages the background copiers copied.
 * @by_write: pages copied before a guest write to them (events or exits).
 * @by_vmm: pages copied before a write of the VMM (wtsnap_before_write()).
 * @eager: pages copied during the pause: the ones KVM writes on its own
 *	(kvmclock, steal time, nested state, guest page tables...).
 * @events: write reports the engine handled.
 * @lost: writes KVM reported as landed on a protected page, whose
 *	contents at the snapshot are gone: the snapshot is not exact and
 *	wtsnap_finish() fails.
 * @pause_ns: how long the vCPUs were paused, the pause callback included.
 * @state_ns: of which saving the state and copying the pages KVM writes.
 * @protect_ns: of which setting the protection of guest memory: with
 *	userfaultfd, of every page not copied; with kvm-wtrack, which protects
 *	it all before the pause, handling the writes made before the pause and
 *	protecting their pages again, and unprotecting those copied in it.
 * @elapsed_ns: time since wtsnap_start() began, or the snapshot's whole
 *	duration once it finished.
 * @done: 1 when every page is copied.
 * @error: the first error, a negative errno, or 0.
 */
struct wtsnap_progress {
	uint64_t nr_pages;
	uint64_t copied;
	uint64_t by_copier;
	uint64_t by_write;
	uint64_t by_vmm;
	uint64_t eager;
	uint64_t events;
	uint64_t lost;
	uint64_t pause_ns;
	uint64_t state_ns;
	uint64_t protect_ns;
	uint64_t elapsed_ns;
	int done;
	int error;
};

/**
 * wtsnap_open() - set up lazy snapshots of a VM
 * @vm: the VM; copied.
 * @p: how to snapshot; NULL for ring mode with one copier.
 * @out: where the engine is stored on success.
 *
 * Turns on write tracking for the VM in the backend's mode (once in the
 * VM's life: see wtrack_open()) and probes what state KVM can save.  One
 * snapshot runs at a time; an engine takes any number in turn.
 *
 * Return: 0 on success; -EINVAL for bad parameters or regions;
 * wtrack_open()'s errors; -EOPNOTSUPP without userfaultfd write-protect
 * (WTSNAP_BACKEND_UFFD); another negative errno.
 */
int wtsnap_open(const struct wtsnap_vm *vm, const struct wtsnap_params *p,
		struct wtsnap **out);

/**
 * wtsnap_start() - take a snapshot, lazily
 * @s: the engine.
 * @fd: the snapshot file, open for reading and writing (see
 *	wtsnap_file_create()); the engine works on a duplicate.
 *
 * With kvm-wtrack, write-protects all guest memory while the vCPUs run.
 * Then pauses the vCPUs, saves their state and the VM's, copies the pages
 * KVM writes behind the tracker's back, protects again the pages written
 * since (userfaultfd: write-protects guest memory in bulk) and resumes the
 * vCPUs: the pause is short and does not grow with memory.  Background
 * threads then copy every page and unprotect it; a guest write to a page
 * not yet copied waits until it is.  With WTSNAP_BACKEND_EXIT, the VMM's
 * vCPU threads pass every KVM_RUN that failed with EFAULT, and every
 * KVM_EXIT_WTRACK_LANDED exit, to wtsnap_handle_exit(), from the moment
 * this function is called.
 *
 * Return: 0 once the vCPUs run again; -EBUSY if a snapshot is running;
 * the pause callback's error; another negative errno (the vCPUs are
 * resumed, nothing stays protected).
 */
int wtsnap_start(struct wtsnap *s, int fd);

/**
 * wtsnap_handle_exit() - handle a vCPU's write-tracking exit
 * @s: the engine.
 * @vcpu: the vCPU's index.
 * @run: its struct kvm_run, after KVM_RUN failed with EFAULT or returned
 *	with exit reason KVM_EXIT_WTRACK_LANDED.
 *
 * For WTSNAP_BACKEND_EXIT.  A stopped write (EFAULT): copies the page the
 * vCPU was about to write (or waits for the copier that is copying it)
 * and unprotects it, so that KVM_RUN may simply be called again.  A write
 * KVM made on its own (KVM_EXIT_WTRACK_LANDED): has landed and KVM ended
 * the page's protection; if the page was not copied yet, the snapshot is
 * not exact (@lost in struct wtsnap_progress).  KVM_RUN is called again
 * either way.  Any thread may call it.
 *
 * Return: 1 if the exit was a write-tracking report and is handled; 0 if
 * it is something else, for the VMM; -ESTALE if a write KVM made on its
 * own landed on a page not yet copied; another negative errno if the page
 * could not be copied.
 */
int wtsnap_handle_exit(struct wtsnap *s, unsigned int vcpu, struct kvm_run *run);

/**
 * wtsnap_before_write() - let the snapshot copy pages the VMM will write
 * @s: the engine.
 * @gpa: the guest-physical address the VMM writes (device emulation, DMA).
 * @size: how many bytes.
 *
 * The VMM writes guest memory through its own mapping, which write
 * tracking does not see: it must call this first while a snapshot runs.
 * Returns once every page of the range is in the snapshot.  Cheap when no
 * snapshot runs.  Any thread may call it.
 *
 * Return: 0 on success; -EINVAL for an empty or wrapping range; the
 * negative errno of a failed copy.
 */
int wtsnap_before_write(struct wtsnap *s, uint64_t gpa, uint64_t size);

/**
 * wtsnap_progress() - how far the running snapshot is
 * @s: the engine.
 * @p: filled in; safe to call from any thread at any time.
 *
 * Return: 0, or -EINVAL if @s or @p is NULL.
 */
int wtsnap_progress(struct wtsnap *s, struct wtsnap_progress *p);

/**
 * wtsnap_finish() - wait for the snapshot and complete its file
 * @s: the engine.
 * @summary: filled with the final counters if not NULL.
 *
 * Waits until every page is copied, then writes the file's final header
 * (wtsnap_file_finish()) and closes it.  Nothing stays protected.
 *
 * Return: 0 if the snapshot is complete and exact; -ESTALE if a write
 * landed on a page before it was copied (@summary->lost); -ENOENT if no
 * snapshot was started; the first error of the copy.
 */
int wtsnap_finish(struct wtsnap *s, struct wtsnap_progress *summary);

/**
 * wtsnap_close() - tear the engine down
 * @s: the engine, or NULL.
 *
 * A running snapshot is abandoned (its file stays unfinished) after its
 * copy completes.  Closing a ring mode engine ends write tracking's ring.
 */
void wtsnap_close(struct wtsnap *s);

/**
 * wtsnap_restore_state() - load a snapshot's vCPU and VM state into a VM
 * @f: an open snapshot file (a reader).
 * @vm_fd: a VM created like the snapshot's: same memslots, holding the
 *	snapshot's pages, same in-kernel irqchip and PIT, vCPUs created and
 *	never run.
 * @vcpu_fds: its vCPUs, by the snapshot's vCPU index.
 * @nr_vcpus: how many; must be the file's.
 *
 * Sets the irqchip and PIT, then each vCPU's CPUID, registers, MSRs,
 * FPU, LAPIC, events, debug registers and nested state, and last the
 * VM's clock, without adding the wall-clock time since the snapshot.
 *
 * Return: 0 on success; -EINVAL if @nr_vcpus does not match; -EIO if KVM
 * took only part of an MSR record; another ioctl's negative errno.
 */
int wtsnap_restore_state(const struct wtsnap_file *f, int vm_fd,
			 const int *vcpu_fds, unsigned int nr_vcpus);

#ifdef __cplusplus
}
#endif

#endif /* WTSNAP_H */
