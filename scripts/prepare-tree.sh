#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Turn the pristine Debian source subset into the patched tree we build from:
# add the uapi header (uapi/ is its one home; the patches include it), apply
# kernel/series, then sync the KVM module build directory.  Only files whose content changed get a new mtime, so Kbuild
# rebuilds only what an edit touched.
#
# usage: prepare-tree.sh PRISTINE LINUX KVMDIR
set -euo pipefail

pristine=$(realpath "$1") linux=$(realpath -m "$2") kvmdir=$(realpath -m "$3")
top=$(cd "$(dirname "$0")/.." && pwd)
stage=$(mktemp -d "${linux%/*}/stage.XXXXXX")
mkdir -p "$stage/tree"
trap 'rm -rf "$stage"' EXIT

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
	case "$p" in ''|'#'*) continue ;; esac
	sed -n 's|^+++ b/\([^[:space:]]*\).*|\1|p' "$top/kernel/patches/$p" >>"$overlay"
done <"${SERIES:-$top/kernel/series}"
(cd "$top/uapi" && find . -type f -printf 'include/uapi/%P\n') >>"$overlay"
sort -u -o "$overlay" "$overlay"

while read -r f; do
	mkdir -p "$stage/tree/$(dirname "$f")"
	[ -e "$pristine/$f" ] && cp "$pristine/$f" "$stage/tree/$f"
done <"$overlay"
mkdir -p "$stage/tree/include/uapi" && cp -r "$top/uapi/." "$stage/tree/include/uapi/"
while read -r p; do
	case "$p" in ''|'#'*) continue ;; esac
	if ! patch -d "$stage/tree" -p1 -s -N --no-backup-if-mismatch \
		<"$top/kernel/patches/$p"; then
		echo "prepare-tree: $p does not apply to the pristine $(basename "$pristine") tree" >&2
		exit 1
	fi
done <"${SERIES:-$top/kernel/series}"

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
