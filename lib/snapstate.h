/* SPDX-License-Identifier: MIT */
/*
 * libwtrack internals: capturing a VM's state into snapshot records
 * (vmstate.c) for the snapshot engine (snapshot.c).
 */
#ifndef WTRACK_SNAPSTATE_H
#define WTRACK_SNAPSTATE_H

#include <stdbool.h>
#include <stdint.h>
#include <linux/kvm.h>
#include "wtsnap.h"

/* What this KVM can save, probed once per engine. */
struct wts_caps {
	int xsave_size;			/* KVM_CAP_XSAVE2, 0 without */
	int xcrs;			/* KVM_CAP_XCRS */
	int nested_size;		/* KVM_CAP_NESTED_STATE, 0 without */
	struct kvm_msr_list *msrs;	/* KVM_GET_MSR_INDEX_LIST */
};

/* The parts of a vCPU's state that name guest pages KVM writes itself. */
struct wts_vcpu_state {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_msrs *msrs;
	struct kvm_nested_state *nested;	/* NULL without nesting */
};

int wts_caps_init(struct wts_caps *caps, int vm_fd);
void wts_caps_free(struct wts_caps *caps);
int wts_save_vcpu(struct wtsnap_file *f, unsigned int idx, int fd,
		  const struct wts_caps *caps, struct wts_vcpu_state *st);
void wts_vcpu_state_free(struct wts_vcpu_state *st);
int wts_save_vm(struct wtsnap_file *f, int vm_fd);

/* userfaultfd write-protect (uffd.c): 0 or a count, or a negative errno. */
int wts_uffd_open(void);
int wts_uffd_register(int fd, void *hva, uint64_t len);
int wts_uffd_unregister(int fd, void *hva, uint64_t len);
int wts_uffd_wp(int fd, void *hva, uint64_t len, bool wp);
int wts_uffd_read(int fd, uint64_t *hvas, int max);

#endif /* WTRACK_SNAPSTATE_H */
