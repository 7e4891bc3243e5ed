/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A small VMM for the lazy snapshot demo and its selftest, on the KVM
 * selftests library: a VM whose vCPUs write guest memory as fast as they
 * can, each in its own pages, and keep a checksum of what they wrote that
 * they verify now and then.  A snapshot that mixed pages of different
 * instants, or a restore that lost one, fails the guest's own check.
 */
#ifndef WTRACK_SNAPVM_H
#define WTRACK_SNAPVM_H

#include <stdbool.h>
#include <stdint.h>
#include <wtsnap.h>

#define SNAPVM_MAX_VCPUS	8
#define SNAPVM_MAX_REGIONS	8

struct snapvm;

struct snapvm_config {
	unsigned int nr_vcpus;
	uint64_t mem_mib;		/* guest memory besides the code: even */
	bool pvclock;			/* kvmclock and steal time on */
	bool nested;			/* an L2 guest writes (SVM, 1 vCPU) */
	bool backdoor;			/* and receives VMware backdoor messages */
	/*
	 * A working set: each vCPU writes its first hot_pages pages, and one
	 * write in cold_every goes to any of its pages.  0: all pages alike.
	 */
	uint32_t hot_pages;
	uint32_t cold_every;
};

struct snapvm *snapvm_create(const struct snapvm_config *cfg);
struct snapvm *snapvm_restore(const struct snapvm_config *cfg, int snap_fd);
void snapvm_start(struct snapvm *v);
int snapvm_stop(struct snapvm *v);
void snapvm_free(struct snapvm *v);

/* Its description for wtsnap_open(); the pause and resume callbacks. */
void snapvm_describe(struct snapvm *v, struct wtsnap_vm *vm,
		     struct wtsnap_vm_region regions[SNAPVM_MAX_REGIONS]);
int snapvm_pause(void *v);
void snapvm_resume(void *v);
void snapvm_set_engine(struct snapvm *v, struct wtsnap *s);
int snapvm_vcpu_fd(struct snapvm *v, unsigned int idx);

/* Memory the guest never touches, for the VMM's own writes. */
void *snapvm_dev_mem(struct snapvm *v, uint64_t *gpa, uint64_t *size);
void snapvm_set_pause_hook(struct snapvm *v, void (*hook)(void *), void *arg);

/* Guest writes so far, all vCPUs; guest checks passed so far. */
uint64_t snapvm_writes(struct snapvm *v);
uint64_t snapvm_checks(struct snapvm *v);
void snapvm_wait_checks(struct snapvm *v, uint64_t more);
/* Pauses that found a vCPU inside a backdoor message, so far. */
uint64_t snapvm_midway_pauses(struct snapvm *v);

/* All guest memory, region by region as snapvm_describe() lists it. */
uint64_t snapvm_mem_size(struct snapvm *v);
void snapvm_copy_mem(struct snapvm *v, void *buf);

#endif /* WTRACK_SNAPVM_H */
