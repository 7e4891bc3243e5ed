#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Turn the pristine Debian source subset into the patched tree we build from:
# add the uapi headers (uapi/ is their one home; the patches include them),
# apply our series (scripts/series.sh), then sync the KVM module build
# directory.  Only files whose content changed get a new mtime, so Kbuild
# rebuilds only what an edit touched.
#
# usage: prepare-tree.sh PRISTINE LINUX KVMDIR
#   PATCHES=<file>: the patches to apply, one path a line (default: all of
#   both series)
set -euo pipefail

pristine=$(realpath "$1") linux=$(realpath -m "$2") kvmdir=$(realpath -m "$3")
top=$(cd "$(dirname "$0")/.." && pwd)
stage=$(mktemp -d "${linux%/*}/stage.XXXXXX")
mkdir -p "$stage/tree"
trap 'rm -rf "$stage"' EXIT
patches=$stage/patches.list
if [ -n "${PATCHES:-}" ]; then
	cp "$PATCHES" "$patches"
else
	"$top/scripts/series.sh" all >"$patches"
fi

# Copy $1 to $2 only when the content differs, keeping mtimes stable.
update() {
	if ! cmp -s "$1" "$2"; then
		mkdir -p "$(dirname "$2")"
		rm -f "$2"
		cp "$1" "$2"
	fi
}

if [ ! -e "$linux/.wtrack-overlay" ]; then
	rm -rf "$linux"
	cp -a "$pristine" "$linux"
	: >"$linux/.wtrack-overlay"
fi

# Patch only the files the series touches, in a scratch copy.
overlay=$stage/overlay.list
: >"$overlay"
while read -r p; do
	sed -n 's|^+++ b/\([^[:space:]]*\).*|\1|p' "$p" >>"$overlay"
done <"$patches"
(cd "$top/uapi" && find . -type f -printf 'include/uapi/%P\n') >>"$overlay"
sort -u -o "$overlay" "$overlay"

while read -r f; do
	mkdir -p "$stage/tree/$(dirname "$f")"
	[ -e "$pristine/$f" ] && cp "$pristine/$f" "$stage/tree/$f"
done <"$overlay"
mkdir -p "$stage/tree/include/uapi" && cp -r "$top/uapi/." "$stage/tree/include/uapi/"
# No fuzz: a patch that applies only approximately is a broken series.
while read -r p; do
	if ! patch -d "$stage/tree" -p1 -s -N -F0 --no-backup-if-mismatch <"$p"; then
		echo "prepare-tree: ${p#"$top"/} does not apply after the patches before it" >&2
		exit 1
	fi
done <"$patches"

# Files we overlaid last time but no longer touch go back to pristine.
comm -23 <(sort "$linux/.wtrack-overlay") "$overlay" | while read -r f; do
	if [ -e "$pristine/$f" ]; then update "$pristine/$f" "$linux/$f"; else rm -f "$linux/$f"; fi
done
while read -r f; do
	update "$stage/tree/$f" "$linux/$f"
done <"$overlay"
cp "$overlay" "$linux/.wtrack-overlay"

# The module build directory: KVM sources, the headers we touch, our Kbuild.
# Objects built before a header joined (or left) the overlay recorded the
# installed header as their dependency, so a changed overlay set means a
# clean build.
headers=$stage/headers.list
{ grep -E '^(include|arch/x86/include)/' "$overlay" || true; } >"$headers"
if ! cmp -s "$headers" "$kvmdir/.overlay-headers"; then
	rm -rf "$kvmdir"
fi
mkdir -p "$kvmdir/include/trace" "$kvmdir/arch/x86/kvm" "$kvmdir/virt/kvm"
rsync -a --delete --exclude='*.o' --exclude='.*.cmd' --exclude='*.mod*' \
	--exclude='*.ko' --exclude='*.a' --exclude='kvm-asm-offsets.[hs]' \
	"$linux/arch/x86/kvm/" "$kvmdir/arch/x86/kvm/"
rsync -a --delete --exclude='*.o' --exclude='.*.cmd' --exclude='*.mod*' \
	"$linux/virt/kvm/" "$kvmdir/virt/kvm/"
while read -r f; do
	update "$linux/$f" "$kvmdir/$f"
done <"$headers"
cp "$headers" "$kvmdir/.overlay-headers"
update "$top/kernel/Kbuild" "$kvmdir/Kbuild"
