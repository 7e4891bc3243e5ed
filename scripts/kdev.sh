#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Work on the kernel series as git commits.
#
#   kdev.sh DIR            create DIR: the pristine source subset as one
#                          commit (tag 'pristine'), then one commit per patch
#   kdev.sh --export DIR   write DIR's commits since 'pristine' back to
#                          kernel/patches and kernel/series
#
# uapi/ stays the one home of the ABI headers: DIR gets symlinks to them,
# ignored by git.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/kernel/version.mk"

if [ "${1:-}" = --export ]; then
	dir=$2
	rm -f "$top"/kernel/patches/*.patch
	git -C "$dir" format-patch -q --no-signature -o "$top/kernel/patches" pristine..HEAD
	(cd "$top/kernel/patches" && ls -- *.patch) >"$top/kernel/series"
	echo "kdev: exported $(wc -l <"$top/kernel/series") patches"
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
while read -r p; do
	case "$p" in ''|'#'*) continue ;; esac
	git am -q "$top/kernel/patches/$p"
done <"$top/kernel/series"
echo "kdev: $dir has $(git rev-list --count pristine..HEAD) patches on 'pristine'"
