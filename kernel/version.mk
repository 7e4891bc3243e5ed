# The one place the Debian kernel is pinned.  The source tarball, the headers
# the modules build against and the image the tests boot all come from this
# exact package version; this file is read by make and by scripts/*.sh.
DEBIAN_KERNEL_VERSION=6.12.117-1~deb12u1
KERNEL_RELEASE=6.12.117+deb12-amd64
