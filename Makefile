# SPDX-License-Identifier: GPL-2.0
#
# kvm-wtrack: synchronous guest write tracking for KVM.
#
#   make            build the patched KVM modules, the library and the tests
#   make check      build, run the library's host tests, run every test in
#                   QEMU under three KVM configs (ours under a fourth, with
#                   the VMware backdoor on), run the upstream KVM
#                   selftests, checkpatch the series
#   make lib        build libwtrack (build/lib)
#   make check-lib  build and run the library's host tests only (no KVM)
#   make install    install libwtrack (PREFIX=/usr/local, DESTDIR=)
#   make deps       install the Debian packages everything needs (apt-get)
#   make check-series  build the modules after each patch of both series
#                   (the VMware one also alone), then without each option
#   make check-debug  build a debug kernel (KASAN, lockdep, KMEMLEAK,
#                   KVM_PROVE_MMU) with the series and run every suite on
#                   it (long: Documentation/wtrack-testing.rst; not in check)
#   make bench      run the benchmark in the test machine (ratios)
#   make demo       the lazy snapshot demo in the test machine
#                   (DEMO_ARGS: examples/wtsnap-demo.c's options)
#   make qemu       boot the test machine with a shell, for poking around
#
# V=1 shows the commands.  CONFIG_KVM_VMWARE=n builds the modules without
# the VMware features (kernel/Kbuild).

include kernel/version.mk
export DEBIAN_KERNEL_VERSION KERNEL_RELEASE

ifneq ($(V),1)
Q := @
MAKEFLAGS += --no-print-directory
endif

TOP      := $(CURDIR)
B        := $(TOP)/build
TARBALL  := /usr/src/linux-source-6.12.tar.xz
HDRS     := /usr/src/linux-headers-$(KERNEL_RELEASE)
PRISTINE := $(B)/linux-pristine
LINUX    := $(B)/linux
KVMDIR   := $(B)/kvm
JOBS     ?= $(shell nproc)

# What of the source tarball we need: KVM itself, the headers, and what
# 'make headers', the KVM selftests and checkpatch.pl need around them.
SRC_PARTS := arch/x86 virt include tools scripts usr Makefile Kbuild Kconfig

KERNEL_INPUTS := kernel/series kernel/vmware/series kernel/Kbuild \
		 $(wildcard kernel/patches/*.patch kernel/vmware/patches/*.patch) \
		 scripts/series.sh $(shell find uapi -type f)

MODULES := $(KVMDIR)/kvm.ko $(KVMDIR)/kvm-amd.ko $(KVMDIR)/kvm-intel.ko
LIBOUT  := $(B)/lib
HOST_TAP := $(LIBOUT)/host-tests.tap

.PHONY: all deps modules tree headers selftests lib install initramfs check check-patches \
	check-debug \
	check-series check-runner check-lib bench demo \
	qemu clean distclean

all: modules selftests lib

# Everything below needs the packages: each run checks them (quickly) and
# installs what is missing.
deps:
	$(Q)scripts/deps.sh

$(PRISTINE)/.stamp: | deps
	@echo "  EXTRACT linux-source-6.12 ($(DEBIAN_KERNEL_VERSION))"
	$(Q)rm -rf $(PRISTINE) $(LINUX) && mkdir -p $(PRISTINE)
	$(Q)tar -xf $(TARBALL) -C $(PRISTINE) --strip-components=1 \
		$(addprefix linux-source-6.12/,$(SRC_PARTS))
	$(Q)grep -q '^SUBLEVEL = $(word 3,$(subst ., ,$(subst -, ,$(DEBIAN_KERNEL_VERSION))))$$' \
		$(PRISTINE)/Makefile || { echo "source tarball is not $(DEBIAN_KERNEL_VERSION)"; exit 1; }
	$(Q)touch $@

$(LINUX)/.stamp: $(PRISTINE)/.stamp $(KERNEL_INPUTS) scripts/prepare-tree.sh
	@echo "  PATCH   kernel/series kernel/vmware/series"
	$(Q)scripts/prepare-tree.sh $(PRISTINE) $(LINUX) $(KVMDIR)
	$(Q)touch $@

tree: $(LINUX)/.stamp

modules: $(LINUX)/.stamp | deps
	$(Q)$(MAKE) -C $(HDRS) M=$(KVMDIR) -j$(JOBS) $(if $(Q),-s) modules
	@echo "  MODULES $(notdir $(MODULES))"

# The uapi headers userspace builds against: the patched tree's.
$(LINUX)/usr/include/.stamp: $(LINUX)/.stamp
	@echo "  HEADERS usr/include"
	$(Q)$(MAKE) -C $(LINUX) ARCH=x86_64 -s headers
	$(Q)touch $@

headers: $(LINUX)/usr/include/.stamp

selftests: headers lib | deps
	$(Q)$(MAKE) -C selftests LINUX=$(LINUX) O=$(B)/selftests LIBWTRACK=$(LIBOUT) JOBS=$(JOBS)

# The consumer library: on its own, against our uapi header only.
lib: | deps
	$(Q)$(MAKE) -C lib O=$(LIBOUT)

install: lib
	$(Q)$(MAKE) -C lib O=$(LIBOUT) install

# The library's host tests, against an emulated kernel; with the tree
# there, kernel-doc checks the header too.
check-lib: lib
	$(Q)$(MAKE) -C lib O=$(LIBOUT) KERNEL_DOC=$(wildcard $(LINUX)/scripts/kernel-doc) check

initramfs: modules selftests
	$(Q)scripts/mkinitramfs.sh $(KVMDIR) $(B)/selftests $(B)/initramfs.cpio.gz

check-patches: $(LINUX)/.stamp
	$(Q)scripts/check-patches.sh $(LINUX)

# Every prefix of the series builds (slow: one module build per patch).
check-series: $(PRISTINE)/.stamp | deps
	$(Q)scripts/check-series.sh $(PRISTINE) $(B)/series-check $(HDRS)

# The runner's own test: a fake QEMU that freezes, dies, warns and fails.
check-runner:
	$(Q)scripts/tests/runner-test.sh

# The host tests' results go into the final count: a failing one (or one
# that did not build: no TAP file) fails make check at the end, not here.
check: check-runner initramfs check-patches
	$(Q)rm -f $(HOST_TAP)
	-$(Q)$(MAKE) -C lib O=$(LIBOUT) KERNEL_DOC=$(LINUX)/scripts/kernel-doc tap
	$(Q)HOST_TAP=$(HOST_TAP) scripts/run-tests.sh $(B)/initramfs.cpio.gz $(B)/results

# The whole kernel, from tinyconfig plus kernel/debug.config, our series
# applied; the same tests, on it (CONFIGS= as for run-tests.sh).
DEBUG_LINUX := $(B)/linux-debug
check-debug: selftests | deps
	$(Q)scripts/debug-kernel.sh $(B)/linux-debug-pristine $(DEBUG_LINUX)
	$(Q)scripts/mkinitramfs.sh --debug $(DEBUG_LINUX) - $(B)/selftests \
		$(B)/initramfs-debug.cpio.gz
	$(Q)KERNEL=$(DEBUG_LINUX)/arch/x86/boot/bzImage STALL=300 SLOW=4 \
		scripts/run-tests.sh $(B)/initramfs-debug.cpio.gz $(B)/results-debug

# The benchmark, in one boot of the test machine (CONFIG=npt0 etc.).
bench: initramfs
	$(Q)scripts/run-qemu.sh --log $(B)/bench.log --stall 300 $(B)/initramfs.cpio.gz \
		"wtrack.config=$(or $(CONFIG),default) wtrack.suites=bench"
	$(Q)sed -n 's/^@@O //p' $(B)/bench.log

# A live snapshot of a busy VM with each backend, restored and checked,
# and the pause time of a 2 GiB VM against the 128 MiB one.
DEMO_ARGS ?= -v 2 -m 128 -c -n 3 -W 4:1000000 -W 4:1000 -L 2048 -p 7
demo: initramfs
	$(Q)scripts/run-demo.sh $(B)/initramfs.cpio.gz $(B)/demo.log $(DEMO_ARGS)

qemu: initramfs
	$(Q)scripts/run-qemu.sh --interactive $(B)/initramfs.cpio.gz $(CONFIG)

clean:
	$(Q)rm -rf $(KVMDIR) $(B)/selftests $(B)/initramfs* $(B)/results $(LIBOUT)
	$(Q)$(MAKE) -C selftests clean O=$(B)/selftests 2>/dev/null || true

distclean:
	$(Q)rm -rf $(B)
