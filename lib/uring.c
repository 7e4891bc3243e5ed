// SPDX-License-Identifier: MIT
/*
 * The real transport: kvm-wtrack's ring commands as IORING_OP_URING_CMD
 * on the ring fd.  struct kvm_wtrack_ring_cmd does not fit in the 16 bytes
 * of command data of a 64-byte SQE, so the io_uring has 128-byte SQEs
 * (IORING_SETUP_SQE128): the kernel fails a command from any other ring.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <liburing.h>
#include "internal.h"

/* At most two commands are in flight: plenty of room. */
#define WT_URING_ENTRIES	8

_Static_assert(sizeof(struct io_uring_sqe) == 64 &&
	       offsetof(struct io_uring_sqe, cmd) + sizeof(struct kvm_wtrack_ring_cmd) <= 128,
	       "the ring command must fit a 128-byte SQE");

struct wt_uring {
	struct io_uring ring;
	int fd;
	bool unsubmitted;	/* an SQE the kernel has not taken yet */
};

static int uring_submit(void *priv, unsigned int op,
			const struct kvm_wtrack_ring_cmd *cmd, uint64_t tag)
{
	struct wt_uring *u = priv;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_rw(IORING_OP_URING_CMD, sqe, u->fd, NULL, 0, 0);
	sqe->cmd_op = op;
	/* The whole command, reserved zeroes included: the SQE is reused. */
	memcpy(sqe->cmd, cmd, sizeof(*cmd));
	io_uring_sqe_set_data64(sqe, tag);
	/*
	 * A failed submit leaves the SQE in the ring, where the next
	 * io_uring_enter() takes it: the command is in flight all the same.
	 */
	if (io_uring_submit(&u->ring) < 0)
		u->unsubmitted = true;
	return 0;
}

static int uring_reap(void *priv, struct wt_cqe *c, bool wait)
{
	struct wt_uring *u = priv;
	struct io_uring_cqe *cqe;
	int ret;

	if (wait && u->unsubmitted) {
		ret = io_uring_submit(&u->ring);
		if (ret < 0)
			return ret;
		u->unsubmitted = false;
	}
	if (wait)
		ret = io_uring_wait_cqe(&u->ring, &cqe);
	else
		ret = io_uring_peek_cqe(&u->ring, &cqe);
	if (ret == -EAGAIN && !wait)
		return 0;
	if (ret < 0)
		return ret;
	c->tag = io_uring_cqe_get_data64(cqe);
	c->res = cqe->res;
	io_uring_cqe_seen(&u->ring, cqe);
	return 1;
}

int wt_uring_create(int ring_fd, unsigned int flags, void **privp)
{
	struct io_uring_params p = { .flags = IORING_SETUP_SQE128 };
	struct wt_uring *u = calloc(1, sizeof(*u));
	int ret;

	if (!u)
		return -ENOMEM;
	if (flags & WTRACK_F_SQPOLL)
		p.flags |= IORING_SETUP_SQPOLL;
	ret = io_uring_queue_init_params(WT_URING_ENTRIES, &u->ring, &p);
	if (ret < 0) {
		free(u);
		return ret;
	}
	u->fd = ring_fd;
	*privp = u;
	return 0;
}

/* Closing the io_uring cancels a FETCH still waiting in the kernel. */
void wt_uring_destroy(void *priv)
{
	struct wt_uring *u = priv;

	io_uring_queue_exit(&u->ring);
	free(u);
}

const struct wt_transport wt_uring_transport = {
	.submit = uring_submit,
	.reap = uring_reap,
	.release = wt_uring_destroy,
};
