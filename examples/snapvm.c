// SPDX-License-Identifier: GPL-2.0
/*
 * The demo VMM (see snapvm.h).  vCPU threads run until paused: a pause
 * sets immediate_exit and signals every thread, so a vCPU in the guest,
 * or waiting in KVM for a resolve, returns with EINTR, and one that is
 * handling an exit completes its I/O in the next KVM_RUN before it stops.
 * With backdoor messages a pause waits for exits instead (snapvm_pause()).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/kvm.h>
#include <linux/kvm_vmware.h>
#include <asm/kvm_para.h>

#include "kvm_util.h"
#include "processor.h"
#include "svm_util.h"
#include "snapvm.h"
#include <wtrack.h>

#define DATA_GPA	(1ULL << 32)
#define DATA_SLOT	1
/*
 * Device memory: only the VMM writes it (think of a virtio ring), and it
 * sits above the data so that the copiers get to it last.
 */
#define DEV_GPA		(1ULL << 36)
#define DEV_SLOT	2
#define DEV_PAGES	256
#define PAGE		4096ULL
#define MAGIC		0x5a17c0de5a17c0deULL

/*
 * The data region: page 0 holds each vCPU's control block, page 1 its
 * kvmclock and steal time areas, pages 2 to 17 two mailbox pages per vCPU
 * for backdoor messages, the rest are the pages it writes: vCPU i owns
 * pages 18 + i, 18 + i + n, 18 + i + 2n...
 */
struct guest_ctl {
	uint64_t seed;
	uint64_t sum;		/* what its pages' counters add up to */
	uint64_t writes;
	uint64_t checks;
	uint64_t clock_reads;
	uint64_t messages;	/* backdoor messages received */
	uint64_t fail_line;	/* a failed check: where, and the values */
	uint64_t fail_a, fail_b;
};

/*
 * A failed check writes itself into the control block and exits on this
 * port.  Not the selftests' ucalls: their pool holds host addresses of
 * the VM that created it, which a restored VM's memory would carry over.
 */
#define FAIL_PORT	0x5ee

#define GUEST_CHECK_EQ(c, a, b)						\
do {									\
	uint64_t __a = (a), __b = (b);					\
									\
	if (__a != __b)							\
		guest_fail(c, __LINE__, __a, __b);			\
} while (0)

/* struct pvclock_vcpu_time_info, which no uapi header has. */
struct guest_pvclock {
	uint32_t version;
	uint32_t pad0;
	uint64_t tsc_timestamp;
	uint64_t system_time;
	uint32_t tsc_to_system_mul;
	int8_t tsc_shift;
	uint8_t flags;
	uint8_t pad[2];
};

struct guest_pv {
	struct guest_pvclock clock;		/* 32 bytes */
	uint8_t pad[32];
	struct kvm_steal_time steal;		/* 64 bytes */
};

#define CTL_PAGE	0
#define PV_PAGE		1
#define MBOX_PAGE	2
#define FIRST_DATA	(MBOX_PAGE + 2 * SNAPVM_MAX_VCPUS)

/* guest_code()'s flags */
#define GUEST_PV	(1U << 0)
#define GUEST_BACKDOOR	(1U << 1)

/*
 * Backdoor messages: REP INSB of HB_LEN bytes from the VMware
 * high-bandwidth port, every HB_EVERY writes, into a mailbox straddling
 * the vCPU's two mailbox pages: KVM's emulator writes it a chunk per
 * KVM_EXIT_IO.  The VMM's device answers from the registers alone: RBX
 * holds the message's number and RCX the bytes still due.
 */
#define HB_PORT		0x5659
#define HB_LEN		3000
#define HB_EVERY	8

static uint8_t hb_byte(uint64_t seq, uint64_t off)
{
	return seq * 7 + off * 13 + (off >> 8);
}

static void guest_fail(struct guest_ctl *c, int line, uint64_t a, uint64_t b)
{
	c->fail_a = a;
	c->fail_b = b;
	c->fail_line = line;
	for (;;)
		asm volatile("outb %%al, %%dx" : : "a"(0), "d"(FAIL_PORT));
}

static uint64_t lcg(uint64_t *seed)
{
	*seed = *seed * 6364136223846793005ULL + 1442695040888963407ULL;
	return *seed >> 33;
}

static uint64_t *guest_page(uint64_t idx, uint32_t nr, uint64_t m)
{
	return (uint64_t *)(DATA_GPA + (FIRST_DATA + idx + nr * m) * PAGE);
}

/* Every page's counter is intact and they add up to the checksum. */
static void guest_check(struct guest_ctl *c, uint32_t idx, uint32_t nr,
			uint64_t mine)
{
	uint64_t sum = 0;

	for (uint64_t m = 0; m < mine; m++) {
		uint64_t *p = guest_page(idx, nr, m);

		GUEST_CHECK_EQ(c, p[511], p[0] ^ MAGIC);
		sum += p[0];
	}
	GUEST_CHECK_EQ(c, sum, c->sum);
	c->checks++;
}

static uint8_t *guest_mailbox(uint32_t idx)
{
	return (uint8_t *)(DATA_GPA + (MBOX_PAGE + 2 * idx + 1) * PAGE - HB_LEN / 2);
}

/* Receive a message and check every byte of it. */
static void guest_hb_message(struct guest_ctl *c, uint32_t idx)
{
	uint8_t *buf = guest_mailbox(idx);
	uint64_t seq = ++c->messages;
	uint64_t rdi = (uint64_t)buf, rcx = HB_LEN;

	asm volatile("rep insb"
		     : "+D"(rdi), "+c"(rcx)
		     : "d"(HB_PORT), "a"(KVM_VMWARE_MAGIC), "b"(seq) : "memory");
	for (uint64_t i = 0; i < HB_LEN; i++)
		GUEST_CHECK_EQ(c, buf[i], hb_byte(seq, i));
}

static void guest_pv_on(uint32_t idx)
{
	struct guest_pv *pv = (void *)(DATA_GPA + PV_PAGE * PAGE);

	wrmsr(MSR_KVM_SYSTEM_TIME_NEW, (uint64_t)&pv[idx].clock | 1);
	wrmsr(MSR_KVM_STEAL_TIME, (uint64_t)&pv[idx].steal | 1);
}

static uint32_t hot_pages, cold_every;

/* The page of its own @mine that a vCPU writes next. */
static uint64_t next_page(struct guest_ctl *c, uint64_t mine)
{
	if (hot_pages && hot_pages < mine && c->writes % cold_every)
		return lcg(&c->seed) % hot_pages;
	return lcg(&c->seed) % mine;
}

static void guest_workload(uint32_t idx, uint32_t nr, uint64_t npages,
			   uint32_t flags)
{
	bool pv = flags & GUEST_PV;
	struct guest_ctl *c = &((struct guest_ctl *)DATA_GPA)[idx];
	uint64_t mine = (npages - FIRST_DATA - idx + nr - 1) / nr;
	uint64_t every = mine > 8192 ? mine : 8192;
	struct guest_pv *pvs = (void *)(DATA_GPA + PV_PAGE * PAGE);

	if (pv)
		guest_pv_on(idx);
	for (;;) {
		uint64_t *p = guest_page(idx, nr, next_page(c, mine));
		uint64_t v = p[0];

		GUEST_CHECK_EQ(c, p[511], v ^ MAGIC);
		p[0] = v + 1;
		p[511] = (v + 1) ^ MAGIC;
		c->sum++;
		if ((flags & GUEST_BACKDOOR) && !(c->writes % HB_EVERY))
			guest_hb_message(c, idx);
		if (++c->writes % every)
			continue;
		guest_check(c, idx, nr, mine);
		/* Reading kvmclock makes KVM keep it up to date. */
		if (pv && READ_ONCE(pvs[idx].clock.system_time))
			c->clock_reads++;
	}
}

/*
 * Nested: L1 runs the workload in an L2 guest under SVM, without nested
 * paging, so L2 writes the same guest-physical pages.  One vCPU only:
 * the selftests' run_guest() keeps L2's registers in one global.
 */
static uint64_t l2_npages;
static unsigned long l2_stack[512];

static void l2_code(void)
{
	guest_workload(0, 1, l2_npages, 0);
}

static void guest_code(uint32_t idx, uint32_t nr, uint64_t npages,
		       uint32_t flags, struct svm_test_data *svm)
{
	if (!svm)
		guest_workload(idx, nr, npages, flags);
	generic_svm_setup(svm, l2_code, &l2_stack[ARRAY_SIZE(l2_stack)]);
	run_guest(svm->vmcb, svm->vmcb_gpa);
	/* L2 never exits to L1. */
	guest_fail(&((struct guest_ctl *)DATA_GPA)[idx], __LINE__,
		   svm->vmcb->control.exit_code, 0);
}

struct snapvm {
	struct snapvm_config cfg;
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpus[SNAPVM_MAX_VCPUS];
	int vcpu_fds[SNAPVM_MAX_VCPUS];	/* for struct wtsnap_vm */
	pthread_t threads[SNAPVM_MAX_VCPUS];
	bool started;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool pause_req, stop_req;
	unsigned int nr_paused;
	uint64_t midway_parks;		/* vCPUs paused inside a message */
	struct wtsnap *engine;		/* exit mode: handles write exits */
	void (*pause_hook)(void *);	/* runs with every vCPU paused */
	void *pause_arg;
};

static uint64_t data_pages(const struct snapvm_config *cfg)
{
	return (cfg->mem_mib << 20) / PAGE;
}

static struct guest_ctl *host_ctl(struct snapvm *v, unsigned int i)
{
	return &((struct guest_ctl *)addr_gpa2hva(v->vm, DATA_GPA))[i];
}

static void noop_signal(int sig)
{
}

static struct snapvm *build(const struct snapvm_config *cfg)
{
	struct snapvm *v = calloc(1, sizeof(*v));
	uint64_t npages = data_pages(cfg);

	TEST_ASSERT(v && cfg->nr_vcpus && cfg->nr_vcpus <= SNAPVM_MAX_VCPUS &&
		    cfg->mem_mib >= 2 && !(cfg->mem_mib % 2) &&
		    (!cfg->nested || (cfg->nr_vcpus == 1 && !cfg->pvclock &&
				      !cfg->backdoor)) &&
		    (!cfg->hot_pages || cfg->cold_every),
		    "bad snapvm config");
	v->cfg = *cfg;
	v->vm = vm_create_with_vcpus(cfg->nr_vcpus, guest_code, v->vcpus);
	vm_userspace_mem_region_add(v->vm, VM_MEM_SRC_ANONYMOUS_THP, DATA_GPA,
				    DATA_SLOT, npages, 0);
	vm_userspace_mem_region_add(v->vm, VM_MEM_SRC_ANONYMOUS, DEV_GPA,
				    DEV_SLOT, DEV_PAGES, 0);
	/* 2 MiB guest mappings: few page tables to copy in the pause. */
	virt_map_level(v->vm, DATA_GPA, DATA_GPA, cfg->mem_mib << 20, PG_LEVEL_2M);
	for (unsigned int i = 0; i < cfg->nr_vcpus; i++)
		v->vcpu_fds[i] = v->vcpus[i]->fd;
	pthread_mutex_init(&v->lock, NULL);
	pthread_cond_init(&v->cond, NULL);
	signal(SIGUSR1, noop_signal);
	return v;
}

struct snapvm *snapvm_create(const struct snapvm_config *cfg)
{
	struct snapvm *v = build(cfg);
	uint64_t npages = data_pages(cfg);
	char *data = addr_gpa2hva(v->vm, DATA_GPA);

	for (uint64_t i = FIRST_DATA; i < npages; i++)
		((uint64_t *)(data + i * PAGE))[511] = MAGIC;
	memset(addr_gpa2hva(v->vm, DEV_GPA), 0x5a, DEV_PAGES * PAGE);
	for (unsigned int i = 0; i < cfg->nr_vcpus; i++) {
		vm_vaddr_t svm_gva = 0;

		if (cfg->nested)
			vcpu_alloc_svm(v->vm, &svm_gva);
		host_ctl(v, i)->seed = i + 1;
		vcpu_args_set(v->vcpus[i], 5, i, cfg->nr_vcpus, npages,
			      (cfg->pvclock ? GUEST_PV : 0) |
			      (cfg->backdoor ? GUEST_BACKDOOR : 0), svm_gva);
	}
	l2_npages = npages;
	hot_pages = cfg->hot_pages;
	cold_every = cfg->cold_every;
	sync_global_to_guest(v->vm, l2_npages);
	sync_global_to_guest(v->vm, hot_pages);
	sync_global_to_guest(v->vm, cold_every);
	return v;
}

/* ---- vCPU threads, pause and resume ---- */

struct vcpu_arg {
	struct snapvm *v;
	unsigned int idx;
};

/*
 * Called after KVM_RUN returned EINTR, or an exit inside a backdoor
 * message (@midway): park while a pause is requested.
 */
static bool park(struct snapvm *v, bool midway)
{
	bool stop;

	pthread_mutex_lock(&v->lock);
	if (v->pause_req) {
		v->midway_parks += midway;
		v->nr_paused++;
		pthread_cond_broadcast(&v->cond);
		while (v->pause_req)
			pthread_cond_wait(&v->cond, &v->lock);
		v->nr_paused--;
	}
	stop = v->stop_req;
	pthread_mutex_unlock(&v->lock);
	return stop;
}

static void report_failure(struct snapvm *v, unsigned int idx)
{
	struct kvm_vcpu *vcpu = v->vcpus[idx];
	struct guest_ctl *c = host_ctl(v, idx);

	TEST_ASSERT(vcpu->run->exit_reason == KVM_EXIT_IO &&
		    vcpu->run->io.port == FAIL_PORT,
		    "vCPU %u: unexpected exit %s", idx,
		    exit_reason_str(vcpu->run->exit_reason));
	TEST_FAIL("vCPU %u: guest check at snapvm.c:%lu failed: %#lx != %#lx",
		  idx, c->fail_line, c->fail_a, c->fail_b);
}

/*
 * A write exit that KVM_RUN returned just before the snapshot ended may
 * reach this thread after the engine is gone: its page is unprotected
 * by now, so running again lets the write land.  The same page reported
 * again would mean it stayed protected.  A late landed write needs
 * nothing: KVM ended its page's protection when it reported it.
 */
static void late_exit(struct kvm_vcpu *vcpu, unsigned int idx, uint64_t *late_gpa)
{
	struct kvm_wtrack_event ev;

	TEST_ASSERT(wtrack_exit_event(vcpu->run, idx, &ev) == 1,
		    "vCPU %u: KVM_RUN: unexpected exit %s", idx,
		    exit_reason_str(vcpu->run->exit_reason));
	if (ev.flags & KVM_WTRACK_EVENT_LANDED)
		return;
	TEST_ASSERT(ev.gpa != *late_gpa,
		    "vCPU %u: %#llx stayed protected after the snapshot", idx,
		    (unsigned long long)ev.gpa);
	*late_gpa = ev.gpa;
}

/*
 * The backdoor device: answer a message's KVM_EXIT_IO from the registers.
 * Returns whether this was one, and in @midway whether part of the
 * message has landed already.
 */
static bool hb_answer(struct kvm_vcpu *vcpu, bool *midway)
{
	struct kvm_run *run = vcpu->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	struct kvm_regs regs;
	uint64_t off;

	if (run->exit_reason != KVM_EXIT_IO || run->io.port != HB_PORT)
		return false;
	TEST_ASSERT(run->io.direction == KVM_EXIT_IO_IN && run->io.size == 1,
		    "backdoor port: not a byte input");
	vcpu_regs_get(vcpu, &regs);
	TEST_ASSERT(regs.rcx && regs.rcx <= HB_LEN, "backdoor: RCX %llu", regs.rcx);
	off = HB_LEN - regs.rcx;
	for (uint32_t i = 0; i < run->io.count; i++)
		data[i] = hb_byte(regs.rbx, off + i);
	*midway = off;
	return true;
}

static void *vcpu_thread(void *arg)
{
	struct vcpu_arg *a = arg;
	struct snapvm *v = a->v;
	struct kvm_vcpu *vcpu = v->vcpus[a->idx];
	uint64_t late_gpa = -1ULL;
	struct wtsnap *engine;
	bool midway, landed;

	for (;;) {
		int r = __vcpu_run(vcpu);

		if (r < 0 && errno == EINTR) {
			if (park(v, false))
				break;
			continue;
		}
		/* The answer waits in kvm_run for the next KVM_RUN. */
		if (!r && hb_answer(vcpu, &midway)) {
			if (midway && READ_ONCE(v->pause_req) && park(v, true))
				break;
			continue;
		}
		/*
		 * Exit mode: a stopped write fails with EFAULT, a write KVM
		 * made itself returns KVM_EXIT_WTRACK_LANDED.
		 */
		landed = !r && vcpu->run->exit_reason == KVM_EXIT_WTRACK_LANDED;
		if ((landed || (r < 0 && errno == EFAULT)) &&
		    (engine = READ_ONCE(v->engine))) {
			r = wtsnap_handle_exit(engine, a->idx, vcpu->run);
			TEST_ASSERT(r == 1, "KVM_RUN: %s, engine says %d",
				    landed ? "landed" : "EFAULT", r);
			continue;
		}
		if (landed || (r < 0 && errno == EFAULT)) {
			late_exit(vcpu, a->idx, &late_gpa);
			continue;
		}
		TEST_ASSERT(!r, "KVM_RUN failed: errno %d", errno);
		report_failure(v, a->idx);
	}
	free(a);
	return NULL;
}

void snapvm_start(struct snapvm *v)
{
	for (unsigned int i = 0; i < v->cfg.nr_vcpus; i++) {
		struct vcpu_arg *a = malloc(sizeof(*a));

		TEST_ASSERT(a, "-ENOMEM");
		*a = (struct vcpu_arg){ .v = v, .idx = i };
		pthread_create(&v->threads[i], NULL, vcpu_thread, a);
	}
	v->started = true;
}

/* Make every vCPU leave KVM_RUN: immediate_exit for the next one. */
static void kick_all(struct snapvm *v)
{
	for (unsigned int i = 0; i < v->cfg.nr_vcpus; i++) {
		WRITE_ONCE(v->vcpus[i]->run->immediate_exit, 1);
		pthread_kill(v->threads[i], SIGUSR1);
	}
}

/*
 * With backdoor messages, no kick: each vCPU runs on to its next exit
 * inside a message (every message takes several) and parks there, so
 * that snapshots catch messages half delivered.
 */
int snapvm_pause(void *opaque)
{
	struct snapvm *v = opaque;

	pthread_mutex_lock(&v->lock);
	v->pause_req = true;
	if (!v->cfg.backdoor)
		kick_all(v);
	while (v->nr_paused < v->cfg.nr_vcpus)
		pthread_cond_wait(&v->cond, &v->lock);
	pthread_mutex_unlock(&v->lock);
	if (v->pause_hook)
		v->pause_hook(v->pause_arg);
	return 0;
}

void snapvm_resume(void *opaque)
{
	struct snapvm *v = opaque;

	pthread_mutex_lock(&v->lock);
	for (unsigned int i = 0; i < v->cfg.nr_vcpus; i++)
		WRITE_ONCE(v->vcpus[i]->run->immediate_exit, 0);
	v->pause_req = false;
	pthread_cond_broadcast(&v->cond);
	pthread_mutex_unlock(&v->lock);
}

int snapvm_stop(struct snapvm *v)
{
	if (!v->started)
		return 0;
	pthread_mutex_lock(&v->lock);
	v->stop_req = true;
	kick_all(v);
	pthread_mutex_unlock(&v->lock);
	for (unsigned int i = 0; i < v->cfg.nr_vcpus; i++)
		pthread_join(v->threads[i], NULL);
	v->started = false;
	v->stop_req = false;
	for (unsigned int i = 0; i < v->cfg.nr_vcpus; i++)
		v->vcpus[i]->run->immediate_exit = 0;
	return 0;
}

uint64_t snapvm_midway_pauses(struct snapvm *v)
{
	return READ_ONCE(v->midway_parks);
}

void snapvm_free(struct snapvm *v)
{
	snapvm_stop(v);
	kvm_vm_free(v->vm);
	free(v);
}

void *snapvm_dev_mem(struct snapvm *v, uint64_t *gpa, uint64_t *size)
{
	*gpa = DEV_GPA;
	*size = DEV_PAGES * PAGE;
	return addr_gpa2hva(v->vm, DEV_GPA);
}

int snapvm_vcpu_fd(struct snapvm *v, unsigned int idx)
{
	return v->vcpu_fds[idx];
}

void snapvm_set_engine(struct snapvm *v, struct wtsnap *s)
{
	WRITE_ONCE(v->engine, s);
}

void snapvm_set_pause_hook(struct snapvm *v, void (*hook)(void *), void *arg)
{
	v->pause_hook = hook;
	v->pause_arg = arg;
}

/* ---- Memory ---- */

static unsigned int list_regions(struct snapvm *v,
				 struct wtsnap_vm_region r[SNAPVM_MAX_REGIONS])
{
	struct userspace_mem_region *region;
	unsigned int n = 0;
	int bkt;

	hash_for_each(v->vm->regions.slot_hash, bkt, region, slot_node) {
		TEST_ASSERT(n < SNAPVM_MAX_REGIONS, "too many memslots");
		r[n++] = (struct wtsnap_vm_region) {
			.gpa = region->region.guest_phys_addr,
			.size = region->region.memory_size,
			.hva = (void *)region->region.userspace_addr,
			.slot = region->region.slot,
			.flags = region->region.flags,
		};
	}
	return n;
}

void snapvm_describe(struct snapvm *v, struct wtsnap_vm *vm,
		     struct wtsnap_vm_region regions[SNAPVM_MAX_REGIONS])
{
	*vm = (struct wtsnap_vm) {
		.vm_fd = v->vm->fd,
		.nr_vcpus = v->cfg.nr_vcpus,
		.vcpu_fds = v->vcpu_fds,
		.nr_regions = list_regions(v, regions),
		.regions = regions,
		.pause = snapvm_pause,
		.resume = snapvm_resume,
		.opaque = v,
	};
}

uint64_t snapvm_mem_size(struct snapvm *v)
{
	struct wtsnap_vm_region r[SNAPVM_MAX_REGIONS];
	unsigned int n = list_regions(v, r);
	uint64_t size = 0;

	for (unsigned int i = 0; i < n; i++)
		size += r[i].size;
	return size;
}

void snapvm_copy_mem(struct snapvm *v, void *buf)
{
	struct wtsnap_vm_region r[SNAPVM_MAX_REGIONS];
	unsigned int n = list_regions(v, r);

	for (unsigned int i = 0; i < n; i++) {
		memcpy(buf, r[i].hva, r[i].size);
		buf = (char *)buf + r[i].size;
	}
}

uint64_t snapvm_writes(struct snapvm *v)
{
	uint64_t n = 0;

	for (unsigned int i = 0; i < v->cfg.nr_vcpus; i++)
		n += READ_ONCE(host_ctl(v, i)->writes);
	return n;
}

uint64_t snapvm_checks(struct snapvm *v)
{
	uint64_t n = 0;

	for (unsigned int i = 0; i < v->cfg.nr_vcpus; i++)
		n += READ_ONCE(host_ctl(v, i)->checks);
	return n;
}

/* Every vCPU passes @more more of its own checks. */
void snapvm_wait_checks(struct snapvm *v, uint64_t more)
{
	uint64_t want[SNAPVM_MAX_VCPUS];

	for (unsigned int i = 0; i < v->cfg.nr_vcpus; i++)
		want[i] = READ_ONCE(host_ctl(v, i)->checks) + more;
	for (unsigned int i = 0; i < v->cfg.nr_vcpus; i++)
		while (READ_ONCE(host_ctl(v, i)->checks) < want[i])
			usleep(1000);
}

/* ---- Restore ---- */

static void load_memory(struct snapvm *v, const struct wtsnap_file *f)
{
	struct wtsnap_vm_region r[SNAPVM_MAX_REGIONS];
	const struct wtsnap_region *fr;
	unsigned int n = list_regions(v, r);
	int ret = wtsnap_file_regions(f, &fr);

	TEST_ASSERT(ret == (int)n, "snapshot has %d regions, the VM %u", ret, n);
	for (unsigned int i = 0; i < n; i++) {
		const struct wtsnap_region *s = NULL;

		for (unsigned int j = 0; j < n; j++)
			if (fr[j].slot == r[i].slot)
				s = &fr[j];
		TEST_ASSERT(s && s->gpa == r[i].gpa && s->size == r[i].size,
			    "memslot %u differs from the snapshot's", r[i].slot);
		for (uint64_t off = 0; off < s->size; off += PAGE) {
			ret = wtsnap_file_read_page(f, s->gpa + off,
						    (char *)r[i].hva + off);
			TEST_ASSERT(!ret, "reading page %#lx: %d", s->gpa + off, ret);
		}
	}
}

/* A fresh VM built like the snapshot's, holding its memory and state. */
struct snapvm *snapvm_restore(const struct snapvm_config *cfg, int snap_fd)
{
	struct snapvm *v = build(cfg);
	struct wtsnap_file *f;
	int r;

	r = wtsnap_file_open(snap_fd, 0, &f);
	TEST_ASSERT(!r, "wtsnap_file_open: %d", r);
	load_memory(v, f);
	r = wtsnap_restore_state(f, v->vm->fd, v->vcpu_fds, cfg->nr_vcpus);
	TEST_ASSERT(!r, "wtsnap_restore_state: %d", r);
	wtsnap_file_close(f);
	return v;
}
