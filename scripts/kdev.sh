#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Work on the kernel series as git commits.
#
#   kdev.sh DIR            create DIR: the pristine source subset as one
#                          commit (tag 'pristine'), one commit per patch of
#                          the write-tracking series (tag 'wtrack'), then
#                          one per patch of the VMware series
#   kdev.sh --export DIR   write DIR's commits back: pristine..wtrack to
#                          kernel/patches and kernel/series, wtrack..HEAD
#                          to kernel/vmware/patches and kernel/vmware/series
#
# uapi/ stays the one home of the ABI headers: DIR gets symlinks to them,
# ignored by git.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/kernel/version.mk"

# export DIR RANGE KERNEL_SUBDIR
export_range() {
	local dir=$1 range=$2 out=$top/$3
	rm -f "$out"/patches/*.patch
	mkdir -p "$out/patches"
	git -C "$dir" format-patch -q --no-signature -o "$out/patches" "$range"
	(cd "$out/patches" && find . -name '*.patch' -printf '%P\n' | sort) >"$out/series"
	echo "kdev: exported $(wc -l <"$out/series") patches to ${out#"$top"/}"
}

if [ "${1:-}" = --export ]; then
	dir=$2
	export_range "$dir" pristine..wtrack kernel
	export_range "$dir" wtrack..HEAD kernel/vmware
	exit 0
fi

dir=${1:?usage: kdev.sh DIR | kdev.sh --export DIR}
pristine=$top/build/linux-pristine
[ -e "$pristine/.stamp" ] || make -C "$top" tree
[ -e "$dir" ] && { echo "kdev: $dir exists" >&2; exit 1; }

cp -a "$pristine" "$dir"
rm -f "$dir/.stamp"
cd "$dir"
git init -q
for h in "$top"/uapi/linux/*.h; do
	ln -s "$h" "include/uapi/linux/${h##*/}"
	echo "include/uapi/linux/${h##*/}" >>.git/info/exclude
done
git add -A
git -c user.name=kdev -c user.email=kdev@invalid commit -qm \
	"linux-source-6.12 $DEBIAN_KERNEL_VERSION (subset)"
git tag pristine
git config user.name "kvm-wtrack developers"
git config user.email "kvm-wtrack@lists.invalid"
"$top/scripts/series.sh" wtrack | while read -r p; do git am -q "$p"; done
git tag wtrack
"$top/scripts/series.sh" vmware | while read -r p; do git am -q "$p"; done
echo "kdev: $dir has $(git rev-list --count pristine..wtrack) write-tracking and" \
     "$(git rev-list --count wtrack..HEAD) VMware patches on 'pristine'"
