/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Events into the ring buffer: connection open/close and payload chunks. A
 * syscall's payload (a flat buffer or an iovec array) is staged chunk by chunk
 * in a per-CPU scratch area and copied into the ring with its exact size.
 * Small iovec pieces are coalesced into one event; what is not captured (the
 * per-syscall cap, unreadable memory) is announced as `skip` bytes so that
 * userspace keeps every byte position straight.
 */
#ifndef HTTPTRACED_EMIT_BPF_H
#define HTTPTRACED_EMIT_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include "maps.bpf.h"
#include "sock.bpf.h"

/* Where a syscall's payload lives in user memory. */
struct payload_src {
	__u64 buf;    /* flat buffer, when iov == 0 */
	__u64 iov;    /* struct iovec array, or 0 */
	__u64 iovcnt; /* entries in iov */
	__u64 total;  /* bytes the syscall moved */
	__u32 tid;    /* thread that made the syscall */
	/* The bytes were consumed but never copied to the process (recv with
	 * MSG_TRUNC on TCP): they are announced as skipped, not read. */
	__u8 discarded;
	__u8 pad[3];
};

static __always_inline void emit__header(struct ht_event_header *h, __u16 type,
					 const struct ht_conn_id *conn, __u32 tid, __u64 ts)
{
	h->type = type;
	h->version = HT_ABI_VERSION;
	h->tid = tid;
	h->ts_ns = ts;
	h->conn = *conn;
}

/* Sends the staged chunk (possibly empty, to announce skipped bytes). */
static __always_inline void emit__flush(struct scratch *s, __u32 skip)
{
	struct emit_ctx *c = &s->ctx;
	__u64 len = c->fill;

	if (len > HT_CHUNK_MAX)
		len = HT_CHUNK_MAX;
	barrier_var(len);
	emit__header(&s->ev.hdr, HT_EV_DATA, &c->conn, c->tid, c->ts);
	s->ev.pos = c->pos;
	s->ev.len = (__u32)len;
	s->ev.skip = skip;
	s->ev.dir = c->dir;
	s->ev.syscall = c->sys;
	s->ev.flags = c->flags;
	s->ev.pad = 0;
	ringbuf__output_sampled(&s->rb, &s->ev, sizeof(s->ev) + len, c->wake);
	c->pos += len + skip;
	c->fill = 0;
	c->flags = 0;
	c->wake = 0;
}

/*
 * iovec pieces of at most this many bytes are captured even between the head
 * and the tail of a syscall larger than targ_max_capture: chunk framing. When
 * a slow reader makes Node.js queue its chunks, it writes them in one writev,
 * each chunk as size line, data and CRLF in iovecs of their own; with these
 * pieces every chunk boundary is seen, and the data between is skipped.
 */
#define HT_FRAME_PIECE 64

/* Makes the next iovec the current piece; false past the last one (or unreadable). */
static __always_inline bool emit__next_iov(struct emit_ctx *c)
{
	struct iovec iov;

	if (c->iov_idx >= c->iovcnt ||
	    bpf_probe_read_user(&iov, sizeof(iov), (void *)(c->iov + c->iov_idx * sizeof(struct iovec))))
		return false;
	c->iov_idx++;
	c->base = (__u64)iov.iov_base;
	c->left = iov.iov_len;
	c->small = iov.iov_len <= HT_FRAME_PIECE;
	return true;
}

/* One step: load the next iovec, or copy the next piece into the chunk. */
static long emit__step(__u32 index, void *unused)
{
	struct scratch *s = scratch__get();
	struct emit_ctx *c;
	__u64 n;
	__u32 off;

	if (!s)
		return 1;
	c = &s->ctx;
	if (c->budget == 0)
		return 1;
	if (c->left == 0)
		return emit__next_iov(c) ? 0 : 1;
	if (c->skip_bytes) {
		/* Up to where the tail of a large syscall begins. */
		n = c->left < c->skip_bytes ? c->left : c->skip_bytes;
		c->base += n;
		c->left -= n;
		c->skip_bytes -= n;
		return 0;
	}
	n = c->left;
	if (n > c->budget)
		n = c->budget;
	if (n > HT_CHUNK_MAX - c->fill)
		n = HT_CHUNK_MAX - c->fill;
	off = c->fill & (HT_CHUNK_MAX - 1);
	if (n > HT_CHUNK_MAX)
		n = HT_CHUNK_MAX;
	barrier_var(n);
	if (bpf_probe_read_user(&s->buf[off], n, (void *)c->base)) {
		counters__add(HT_CNT_READ_FAULTS, n);
		return 1; /* the rest becomes skipped bytes */
	}
	c->fill += n;
	c->base += n;
	c->left -= n;
	c->budget -= n;
	c->captured += n;
	if (c->fill >= HT_CHUNK_MAX)
		emit__flush(s, 0);
	return 0;
}

/*
 * One step between the head and the tail of an iovec syscall: loads the next
 * iovec, or stages a small piece (after announcing what was passed over), or
 * passes over a large one.
 */
static long emit__middle_step(__u32 index, void *unused)
{
	struct scratch *s = scratch__get();
	struct emit_ctx *c;
	__u64 n;
	__u32 off;

	if (!s)
		return 1;
	c = &s->ctx;
	if (c->walked >= c->until)
		return 1;
	if (c->left == 0)
		return emit__next_iov(c) ? 0 : 1;
	n = c->left;
	if (n > c->until - c->walked)
		n = c->until - c->walked;
	if (c->small && n <= HT_FRAME_PIECE) {
		if (c->gap) {
			emit__flush(s, c->gap > 0xffffffffULL ? 0xffffffffU : (__u32)c->gap);
			c->gap = 0;
		}
		if (c->fill + n > HT_CHUNK_MAX)
			emit__flush(s, 0);
		off = c->fill & (HT_CHUNK_MAX - 1);
		barrier_var(n);
		if (n > HT_FRAME_PIECE)
			n = HT_FRAME_PIECE;
		if (bpf_probe_read_user(&s->buf[off], n, (void *)c->base)) {
			counters__add(HT_CNT_READ_FAULTS, n);
			c->gap += n;
		} else {
			c->fill += n;
		}
	} else {
		c->gap += n;
	}
	c->base += n;
	c->left -= n;
	c->walked += n;
	return 0;
}

static __always_inline struct scratch *emit__begin(const struct ht_conn_id *conn, __u8 dir,
						   __u8 sys, __u16 flags, __u64 pos, __u32 tid)
{
	struct scratch *s = scratch__get();
	struct emit_ctx *c;

	if (!s)
		return NULL;
	c = &s->ctx;
	c->conn = *conn;
	c->ts = bpf_ktime_get_ns();
	c->tid = tid;
	c->pos = pos;
	c->dir = dir;
	c->sys = sys;
	c->flags = flags;
	c->wake = 0;
	c->fill = 0;
	c->iov = 0;
	c->iovcnt = 0;
	c->iov_idx = 0;
	c->base = 0;
	c->left = 0;
	c->budget = 0;
	c->captured = 0;
	c->skip_bytes = 0;
	c->walked = 0;
	c->until = 0;
	c->gap = 0;
	c->small = 0;
	return s;
}

/*
 * The last bytes of a syscall larger than targ_max_capture are captured too
 * (at most this many, and a quarter of the budget), in place of as many at
 * the end of its head: a chunked body's framing (the chunk's CRLF, the next
 * size line) ends many large writes and reads, as when Node.js writes a
 * 64 KiB chunk as size line + data + CRLF in one writev of 65,545 bytes.
 * Without it the parser lost the chunk boundary and the message.
 */
#define HT_TAIL_BYTES 4096

/*
 * Emits the payload of one syscall that moved src->total bytes starting at
 * pos; `wake`: its first event wakes the reader.
 */
static __always_inline void emit__payload(const struct ht_conn_id *conn, __u8 dir, __u8 sys,
					  __u16 flags, __u64 pos, const struct payload_src *src,
					  bool wake)
{
	struct scratch *s = emit__begin(conn, dir, sys, flags, pos, src->tid);
	struct emit_ctx *c;
	__u64 skip, flat, tail = 0;

	if (!s)
		return;
	c = &s->ctx;
	c->wake = wake;
	c->budget = src->total < targ_max_capture ? src->total : targ_max_capture;
	if (src->total > c->budget) {
		tail = c->budget >> 2;
		if (tail > HT_TAIL_BYTES)
			tail = HT_TAIL_BYTES;
	}
	flat = src->buf;
	if (src->iov && src->iovcnt > 0) {
		/*
		 * The first iovec is read here once. When it holds every byte the
		 * syscall moved (a writev of one buffer, nginx's response heads),
		 * the payload is a flat buffer; otherwise the loop starts from it.
		 */
		struct iovec iov;

		if (bpf_probe_read_user(&iov, sizeof(iov), (void *)src->iov) == 0) {
			if (iov.iov_len >= src->total) {
				flat = (__u64)iov.iov_base;
			} else {
				c->iov_idx = 1;
				c->base = (__u64)iov.iov_base;
				c->left = iov.iov_len;
			}
		}
	}
	if ((!src->iov || flat) && c->budget <= HT_CHUNK_MAX && !tail) {
		/* One flat buffer that fits one event (most writes): no loop. */
		__u64 n = c->budget;

		if (n > HT_CHUNK_MAX)
			n = HT_CHUNK_MAX;
		barrier_var(n);
		if (bpf_probe_read_user(s->buf, n, (void *)flat) == 0) {
			c->fill = n;
			c->captured = n;
		} else {
			counters__add(HT_CNT_READ_FAULTS, n);
		}
		skip = src->total - c->captured;
		emit__flush(s, skip > 0xffffffffULL ? 0xffffffffU : (__u32)skip);
		return;
	}
	if (flat) {
		/* A flat buffer (or one iovec) too large for one event. */
		c->base = flat;
		c->left = src->total;
	} else if (src->iov) {
		c->iov = src->iov;
		c->iovcnt = src->iovcnt < HT_MAX_IOV ? src->iovcnt : HT_MAX_IOV;
	}
	c->budget -= tail;
	bpf_loop(HT_MAX_EVENTS_PER_SYSCALL + 2 * HT_MAX_IOV, emit__step, NULL, 0);

	if (tail) {
		/* The head, then the bytes up to the tail, announced as skipped. */
		__u64 start = src->total - tail;

		if (!flat && c->budget == 0 && c->captured < start) {
			/* An iovec syscall whose head is whole: its small pieces too. */
			c->walked = c->captured;
			c->until = start;
			c->gap = 0;
			bpf_loop(HT_MAX_EVENTS_PER_SYSCALL + 2 * HT_MAX_IOV, emit__middle_step, NULL, 0);
			/* What the walk did not reach (past HT_MAX_IOV) is skipped too. */
			skip = c->gap + (start - c->walked);
		} else {
			skip = start - c->captured;
		}
		emit__flush(s, skip > 0xffffffffULL ? 0xffffffffU : (__u32)skip);
		c->captured = 0;
		c->budget = tail;
		if (flat) {
			c->base = flat + start;
			c->left = tail;
		} else {
			/* From the first iovec again, passing over `start` bytes. */
			c->iov_idx = 0;
			c->left = 0;
			c->skip_bytes = start;
		}
		bpf_loop(2 * HT_MAX_IOV + 2, emit__step, NULL, 0);
		skip = tail - c->captured;
	} else {
		skip = src->total - c->captured;
	}
	if (c->fill || skip)
		emit__flush(s, skip > 0xffffffffULL ? 0xffffffffU : (__u32)skip);
}

/* Announces `len` stream bytes that carry no payload (sendfile). */
static __always_inline void emit__skip(const struct ht_conn_id *conn, __u8 dir, __u8 sys,
				       __u16 flags, __u64 pos, __u64 len, __u32 tid)
{
	struct scratch *s = emit__begin(conn, dir, sys, flags, pos, tid);

	if (s)
		emit__flush(s, len > 0xffffffffULL ? 0xffffffffU : (__u32)len);
}

/*
 * Tells userspace about a connection before its first payload, which sits at
 * `pos` in direction `dir`; the other direction continues from its counter.
 */
static __always_inline long emit__open(const struct ht_conn_key *key, const struct ht_conn_state *st,
				       __u8 dir, __u64 pos)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct sock *sk = sock__from_fd(task, key->fd);
	struct scratch *s = scratch__get();
	struct ht_conn_event *ev;

	if (!sk || !s)
		return -1;
	/* Built in the per-CPU scratch buffer, free until this syscall's payload
	 * is staged: with its two socket names the event is too large for the
	 * stack. Zeroed whole, so no earlier payload travels in its padding. */
	ev = (struct ht_conn_event *)s->buf;
	__builtin_memset(ev, 0, sizeof(*ev));
	struct ht_conn_id id = {.tgid = key->tgid, .fd = key->fd, .gen = st->gen};

	emit__header(&ev->hdr, HT_EV_CONN_OPEN, &id, (__u32)bpf_get_current_pid_tgid(),
		     bpf_ktime_get_ns());
	ev->role = st->role;
	ev->origin = st->origin;
	sock__fill_endpoints(sk, ev);
	BPF_CORE_READ_STR_INTO(&ev->comm, task, group_leader, comm);
	ev->start_pos[dir & 1] = pos;
	ev->start_pos[(dir & 1) ^ 1] = st->pos[(dir & 1) ^ 1];
	ev->proc_start = st->proc_start;
	ev->exec_id = st->exec_id;
	ev->tls = st->tls;
	return ringbuf__output(ev, sizeof(*ev));
}

static __always_inline void emit__close(const struct ht_conn_key *key, const struct ht_conn_state *st,
					__u32 reason)
{
	struct ht_close_event ev = {};
	struct ht_conn_id id = {.tgid = key->tgid, .fd = key->fd, .gen = st->gen};

	emit__header(&ev.hdr, HT_EV_CONN_CLOSE, &id, (__u32)bpf_get_current_pid_tgid(),
		     bpf_ktime_get_ns());
	ev.end_pos[0] = st->pos[0];
	ev.end_pos[1] = st->pos[1];
	ev.reason = reason;
	ringbuf__output(&ev, sizeof(ev));
}

#endif /* HTTPTRACED_EMIT_BPF_H */
