#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Install, with apt-get, the Debian packages the build and the tests need.
# Idempotent: does nothing (quickly) when everything is present.
# usage: deps.sh [--check]   (--check: exit 1 if something is missing)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/kernel/version.mk"

pinned="linux-source-6.12 linux-headers-$KERNEL_RELEASE linux-image-$KERNEL_RELEASE"
tools="build-essential libc6-dev bc bison flex libelf-dev libssl-dev kmod xz-utils
	cpio busybox-static qemu-system-x86 rsync patch liburing-dev pkg-config perl"

missing=
for p in $pinned; do
	v=$(dpkg-query -W -f='${Status} ${Version}' "$p" 2>/dev/null || true)
	[ "$v" = "install ok installed $DEBIAN_KERNEL_VERSION" ] || missing="$missing $p=$DEBIAN_KERNEL_VERSION"
done
for p in $tools; do
	v=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[ "$v" = "install ok installed" ] || missing="$missing $p"
done

[ -z "$missing" ] && exit 0
[ "${1:-}" = --check ] && { echo "missing packages:$missing"; exit 1; }

if [ "$(id -u)" != 0 ]; then
	echo "deps: these Debian packages are missing:$missing" >&2
	echo "deps: run 'make deps' as root (it uses apt-get), or install them yourself." >&2
	exit 1
fi
echo "deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get update -qq || ! apt-get install -y -qq --no-install-recommends $missing >/dev/null; then
	echo "deps: apt-get could not install:$missing" >&2
	echo "deps: the pinned kernel ($DEBIAN_KERNEL_VERSION) comes from bookworm-security;" \
	     "check that it is in your apt sources (kernel/version.mk pins it)." >&2
	exit 1
fi
