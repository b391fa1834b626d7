/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Per-connection logic shared by the syscall hooks: lookup with pid-reuse
 * protection, protocol inference, the userspace "stop tracing" request, and
 * the syscall entry/exit halves.
 */
#ifndef HTTPTRACED_CONN_BPF_H
#define HTTPTRACED_CONN_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "emit.bpf.h"
#include "infer.bpf.h"
#include "maps.bpf.h"
#include "sock.bpf.h"

#define HT_EINPROGRESS 115
#define HT_MSG_PEEK 0x2
#define HT_MSG_TRUNC 0x20

/*
 * The entry for key, unless it was left behind by an exited process whose pid
 * has been reused, or by this process before an execve() (which closed its
 * close-on-exec fds unseen): such an entry is closed and dropped.
 */
static __always_inline struct ht_conn_state *conn__lookup(struct task_struct *task,
							const struct ht_conn_key *key)
{
	struct ht_conn_state *c = bpf_map_lookup_elem(&conns, key);

	if (c && (c->proc_start != task__proc_start(task) || c->exec_id != task__exec_id(task))) {
		if (c->emitted & EMITTED_OPEN)
			emit__close(key, c, HT_CLOSE_SYSCALL);
		bpf_map_delete_elem(&conns, key);
		counters__add(HT_CNT_STALE, 1);
		return NULL;
	}
	return c;
}

/*
 * The entry an alias stands for (conn__find_primary), with key moved to its
 * fd; NULL, and the alias dropped, once that fd's connection is gone (the
 * next syscall on this fd finds the socket anew).
 */
static __always_inline struct ht_conn_state *conn__primary(struct task_struct *task,
							 struct ht_conn_key *key,
							 struct ht_conn_state *alias)
{
	struct ht_conn_key primary = {.tgid = key->tgid, .fd = alias->alias_fd};
	struct ht_conn_state *c = bpf_map_lookup_elem(&conns, &primary);

	/* The same process image as the alias (whose own entry conn__lookup
	 * checked): otherwise the fd was taken over since. */
	if (!c || c->proto == PROTO_ALIAS || c->proc_start != alias->proc_start ||
	    c->exec_id != alias->exec_id) {
		bpf_map_delete_elem(&conns, key);
		return NULL;
	}
	key->fd = primary.fd;
	return c;
}

/* A new connection on key replaces whatever was there (a close we missed). */
static __always_inline struct ht_conn_state *conn__open(struct task_struct *task,
						      const struct ht_conn_key *key, __u8 origin,
						      __u8 role)
{
	struct ht_conn_state *old = bpf_map_lookup_elem(&conns, key);

	if (old && (old->emitted & EMITTED_OPEN))
		emit__close(key, old, HT_CLOSE_SYSCALL);
	return conn__create(task, key, origin, role);
}

/* Drops a `skips` entry, counting it if this call removed it. */
static __always_inline void skips__delete(const struct ht_skip_key *k)
{
	if (bpf_map_delete_elem(&skips, k) == 0)
		__sync_fetch_and_sub(&skips_pending, 1);
}

/*
 * True when userspace said it will only count this syscall's bytes of a body
 * (all of [pos, pos + len) in its range): they are announced, not copied. A
 * syscall that straddles an end of the range is copied as any other (up to
 * targ_max_capture, its tail included: emit__payload).
 */
static __always_inline bool conn__body_skipped(const struct ht_conn_id *id, __u8 dir, __u64 pos,
					       __u64 len)
{
	struct ht_skip_key k = {.conn = *id, .dir = dir & 1};
	struct ht_skip_range *r = bpf_map_lookup_elem(&skips, &k);
	__u64 from, until;

	if (!r)
		return false;
	from = r->from;
	until = r->until;
	if (pos >= until) {
		skips__delete(&k);
		return false;
	}
	return pos >= from && len <= until - pos;
}

#define HT_LARGE_SYSCALL (16U << 10)  /* bytes: a syscall this large may be a large body */
#define HT_LARGE_WAKE_EVERY (256U << 10)

/*
 * Whether this syscall's events should wake the reader now rather than at
 * the next MiB of backlog: it is the first large one (HT_LARGE_SYSCALL) on
 * the connection since the last such wake-up, or since HT_LARGE_WAKE_EVERY
 * bytes of them. A large body then reaches the daemon after one such
 * syscall, and the daemon's skip range (conn__body_skipped) spares the rest
 * of it, not after a MiB of it was copied. Small exchanges never wake it.
 */
static __always_inline bool conn__wake_for_large(struct ht_conn_state *c, __u64 total)
{
	bool wake;

	if (total < HT_LARGE_SYSCALL)
		return false;
	wake = c->big_bytes == 0;
	c->big_bytes += total < HT_LARGE_WAKE_EVERY ? (__u32)total : HT_LARGE_WAKE_EVERY;
	if (c->big_bytes >= HT_LARGE_WAKE_EVERY)
		c->big_bytes = 0;
	return wake;
}

static __always_inline void conn__forget(const struct ht_conn_key *key)
{
	struct ht_conn_state *c = bpf_map_lookup_elem(&conns, key);

	if (!c)
		return;
	if (c->emitted & EMITTED_OPEN)
		emit__close(key, c, HT_CLOSE_SYSCALL);
	if (skips_pending) {
		struct ht_skip_key k = {.conn = {.tgid = key->tgid, .fd = key->fd, .gen = c->gen}};

		skips__delete(&k);
		k.dir = 1;
		skips__delete(&k);
	}
	if (disabled_pending) {
		struct ht_conn_id id = {.tgid = key->tgid, .fd = key->fd, .gen = c->gen};

		if (bpf_map_delete_elem(&disabled, &id) == 0)
			__sync_fetch_and_sub(&disabled_pending, 1);
	}
	bpf_map_delete_elem(&conns, key);
}

/*
 * Makes key's socket a TLS connection: a fresh entry (new identity, the old
 * one closed if userspace knew it) whose positions and payload will be the
 * plaintext seen at libssl, keeping how the socket was opened. The port
 * filter applies as to any connection. NULL if the fd is not a socket.
 */
static __always_inline struct ht_conn_state *tls__convert(struct task_struct *task,
							 const struct ht_conn_key *key,
							 struct ht_conn_state *c)
{
	__u8 origin = HT_ORIGIN_DISCOVERED, role = HT_ROLE_UNKNOWN;

	if (c) {
		origin = c->origin;
		role = c->role;
		conn__forget(key);
	}
	c = conn__create(task, key, origin, role);
	if (c)
		c->tls = 1;
	return c;
}

/*
 * A payload syscall on fd, a connection that is not plain HTTP: if the
 * thread is inside a libssl call, these are that call's TLS records on its
 * socket. The call learns its socket, the SSL object is remembered on it,
 * and the connection becomes a TLS one. Returns 1 when the syscall's bytes
 * are ciphertext and must not be traced as payload.
 *
 * A global function: the verifier checks it once, on its own, and the
 * payload program past the call sees only its result. Inlined, it doubled
 * the states the verifier walked through the payload path after it.
 */
__attribute__((noinline)) int tls__nested(__u32 tgid, __s32 fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct ht_conn_key key = {.tgid = tgid, .fd = fd};
	__u64 id = bpf_get_current_pid_tgid();
	struct tls_call *call = bpf_map_lookup_elem(&tls_calls, &id);
	struct ht_conn_state *c = bpf_map_lookup_elem(&conns, &key);
	struct tls_fd_key fk = {.tgid = tgid};
	__s32 *known;

	if (!c)
		return 0;
	if (!call)
		return c->tls ? 1 : 0;
	call->fd = fd;
	fk.ssl = call->ssl;
	known = bpf_map_lookup_elem(&tls_fds, &fk);
	if (!known || *known != fd)
		bpf_map_update_elem(&tls_fds, &fk, &fd, BPF_ANY);
	if (!c->tls)
		tls__convert(task, &key, c);
	return 1;
}

static __always_inline void conn__ignore(const struct ht_conn_key *key, struct ht_conn_state *c,
					 __u32 reason)
{
	c->proto = PROTO_IGNORED;
	if (c->emitted & EMITTED_OPEN)
		emit__close(key, c, reason);
}

/* Userspace asked to stop tracing this connection (not HTTP, switched protocol). */
static __always_inline bool conn__disabled(const struct ht_conn_key *key, struct ht_conn_state *c)
{
	struct ht_conn_id id = {.tgid = key->tgid, .fd = key->fd, .gen = c->gen};

	if (!bpf_map_lookup_elem(&disabled, &id))
		return false;
	if (bpf_map_delete_elem(&disabled, &id) == 0)
		__sync_fetch_and_sub(&disabled_pending, 1);
	conn__ignore(key, c, HT_CLOSE_DISABLED);
	return true;
}

/*
 * Decides whether the stream starts like HTTP/1.x, from the first bytes of
 * this syscall (continuing a short prefix left by the previous one). A
 * connection seen from its accept()/connect() gets a few attempts; one found
 * mid-stream may need more syscalls before a message starts.
 */
static __always_inline enum infer_result conn__infer(const struct ht_conn_key *key,
						     struct ht_conn_state *c, __u8 dir, __u64 pos,
						     const struct payload_src *src)
{
	__u64 first = src->buf, first_len = src->total;
	__u64 prefix = 0, more = 0;
	__u32 have = 0, n;
	enum infer_result r;

	if (src->iov) {
		struct iovec iov;

		if (bpf_probe_read_user(&iov, sizeof(iov), (void *)src->iov))
			return INFER_NO;
		first = (__u64)iov.iov_base;
		first_len = iov.iov_len < src->total ? iov.iov_len : src->total;
	}
	if (c->prefix_len && c->prefix_dir == dir && c->prefix_end == pos) {
		have = c->prefix_len & (HT_PREFIX_LEN - 1);
		__builtin_memcpy(&prefix, c->prefix, HT_PREFIX_LEN);
	}
	n = HT_PREFIX_LEN - have;
	if (n > first_len)
		n = first_len;
	if (n > HT_PREFIX_LEN)
		n = HT_PREFIX_LEN;
	barrier_var(n);
	if (first && n && bpf_probe_read_user(&more, n, (void *)first))
		n = 0;
	prefix |= more << (have * 8);
	r = first ? infer__classify(prefix, have + n) : INFER_NO;
	if (r == INFER_POSSIBLE && n == src->total && have + n < HT_PREFIX_LEN) {
		/* A short write like "GE": keep the prefix, wait for the rest. */
		__builtin_memcpy(c->prefix, &prefix, HT_PREFIX_LEN);
		c->prefix_len = have + n;
		c->prefix_dir = dir;
		c->prefix_end = pos + src->total;
		return r;
	}
	c->prefix_len = 0;
	if (r != INFER_NO) {
		c->proto = PROTO_HTTP;
		return INFER_MATCH;
	}
	c->attempts++;
	if (c->attempts >= (c->origin == HT_ORIGIN_DISCOVERED ? HT_MAX_INFER_ATTEMPTS_DISCOVERED
							      : HT_MAX_INFER_ATTEMPTS_FRESH)) {
		counters__add(HT_CNT_NOT_HTTP, 1);
		conn__ignore(key, c, HT_CLOSE_NOT_HTTP);
	}
	return INFER_NO;
}

/*
 * Whether a syscall's bytes at pos go out as events: inference on a
 * connection not known to be HTTP yet, the open event before the first
 * payload. Sets *flags to HT_DATA_F_STREAM_START for the direction's first.
 */
static __always_inline bool conn__admit(const struct ht_conn_key *key, struct ht_conn_state *c,
					__u8 dir, __u64 pos, const struct payload_src *src,
					__u16 *flags)
{
	if (c->proto == PROTO_UNKNOWN && conn__infer(key, c, dir, pos, src) == INFER_NO)
		return false;
	if (!(c->emitted & EMITTED_OPEN)) {
		if (emit__open(key, c, dir, pos))
			return false; /* the next syscall tries again */
		c->emitted |= EMITTED_OPEN;
	}
	if (!(c->emitted & EMITTED_DIR(dir & 1))) {
		*flags = HT_DATA_F_STREAM_START;
		c->emitted |= EMITTED_DIR(dir & 1);
	}
	return true;
}

/* Payload of one syscall on a connection. */
static __always_inline void conn__data(const struct ht_conn_key *key, struct ht_conn_state *c, __u8 dir,
				       __u8 sys, const struct payload_src *src)
{
	struct ht_conn_id id;
	__u64 pos;
	__u16 flags = 0;

	if (c->proto == PROTO_HTTP && disabled_pending && conn__disabled(key, c))
		return;
	pos = __sync_fetch_and_add(&c->pos[dir & 1], src->total);
	if (!conn__admit(key, c, dir, pos, src, &flags))
		return;
	id.tgid = key->tgid;
	id.fd = key->fd;
	id.gen = c->gen;
	if (sys == HT_SYS_SENDFILE || src->discarded) {
		emit__skip(&id, dir, sys, flags, pos, src->total, src->tid);
	} else if (skips_pending && conn__body_skipped(&id, dir, pos, src->total)) {
		counters__add(HT_CNT_BODY_SKIPPED, src->total);
		emit__skip(&id, dir, sys, flags, pos, src->total, src->tid);
	} else {
		emit__payload(&id, dir, sys, flags, pos, src, conn__wake_for_large(c, src->total));
	}
}

/*
 * One message of a recvmmsg/sendmmsg. A bpf_loop callback is walked by the
 * verifier until it converges, and conn__data in here (inference, the open
 * event) cost 500k of the exit program's 780k verified instructions, 1.6 s
 * of the daemon's start-up. So the first message's bytes are admitted
 * (conn__admit) before the loop, and this step only emits: the first
 * message if it was admitted, a later one if the connection is HTTP with its
 * open event and this direction's first event out. Otherwise a message only
 * advances the position, as bytes that do not look like HTTP do, and
 * inference goes on at the next syscall (so a call whose first message is
 * only a prefix of a request line, "GE", loses the messages after it).
 */
static long mmsg__step(__u32 index, void *unused)
{
	struct scratch *s = scratch__get();
	struct payload_src src = {};
	struct ht_conn_key key;
	struct ht_conn_state *c;
	struct ht_conn_id id;
	struct mmsghdr m;
	__u16 flags = 0;
	__u64 pos;
	__u8 d;

	if (!s)
		return 1;
	key.tgid = s->mmsg.tgid;
	key.fd = s->mmsg.fd;
	c = bpf_map_lookup_elem(&conns, &key);
	if (!c || c->proto == PROTO_IGNORED)
		return 1;
	if (bpf_probe_read_user(&m, sizeof(m), (void *)(s->mmsg.vec + index * sizeof(m)))) {
		s->mmsg.lost = 1;
		return 1;
	}
	d = s->mmsg.dir & 1;
	pos = __sync_fetch_and_add(&c->pos[d], (__u64)m.msg_len);
	if (index == 0) {
		if (!s->mmsg.admitted)
			return 0;
		flags = s->mmsg.first_flags;
	} else if (c->proto != PROTO_HTTP || !(c->emitted & EMITTED_OPEN) ||
		   !(c->emitted & EMITTED_DIR(d))) {
		return 0;
	}
	id.tgid = key.tgid;
	id.fd = key.fd;
	id.gen = c->gen;
	/* conn__data's last part, written out again: shared through a helper,
	 * this program took 459k verified instructions instead of 394k. */
	if (s->mmsg.discarded) {
		emit__skip(&id, s->mmsg.dir, s->mmsg.sys, flags, pos, m.msg_len, s->mmsg.tid);
	} else if (skips_pending && conn__body_skipped(&id, s->mmsg.dir, pos, m.msg_len)) {
		counters__add(HT_CNT_BODY_SKIPPED, m.msg_len);
		emit__skip(&id, s->mmsg.dir, s->mmsg.sys, flags, pos, m.msg_len, s->mmsg.tid);
	} else {
		src.iov = (__u64)m.msg_hdr.msg_iov;
		src.iovcnt = m.msg_hdr.msg_iovlen;
		src.total = m.msg_len;
		src.tid = s->mmsg.tid;
		emit__payload(&id, s->mmsg.dir, s->mmsg.sys, flags, pos, &src,
			      conn__wake_for_large(c, m.msg_len));
	}
	return 0;
}

/*
 * recvmmsg/sendmmsg: the first HT_MAX_MMSG messages are walked (in a
 * bpf_loop, so the verifier sees the per-message work once); later ones only
 * advance the positions, announced as skipped bytes.
 */
static __always_inline void conn__mmsg(struct task_struct *task, const struct ht_conn_key *key,
				       struct ht_conn_state *c, const struct syscall_args *a,
				       long nmsgs)
{
	struct payload_src first = {};
	struct scratch *s;
	struct mmsghdr m;
	__u64 rest = 0;
	__u16 flags = 0;
	bool admitted;
	int i;

	if (c->proto == PROTO_HTTP && disabled_pending && conn__disabled(key, c))
		return;
	if (bpf_probe_read_user(&m, sizeof(m), (void *)a->buf))
		goto lost;
	/* MSG_TRUNC on TCP: nothing was copied to look at. */
	if (!((a->flags & HT_MSG_TRUNC) && !c->is_unix))
		first.iov = (__u64)m.msg_hdr.msg_iov;
	first.iovcnt = m.msg_hdr.msg_iovlen;
	first.total = m.msg_len;
	/* Where the first message's bytes begin: mmsg__step takes them next. */
	admitted = conn__admit(key, c, a->dir, c->pos[a->dir & 1], &first, &flags);
	s = scratch__get();
	if (!s)
		return;
	s->mmsg.vec = a->buf;
	s->mmsg.tgid = key->tgid;
	s->mmsg.fd = key->fd;
	s->mmsg.dir = a->dir;
	s->mmsg.sys = a->sys;
	s->mmsg.lost = 0;
	s->mmsg.discarded = (a->flags & HT_MSG_TRUNC) && !c->is_unix;
	s->mmsg.admitted = admitted;
	s->mmsg.first_flags = flags;
	s->mmsg.tid = (__u32)task->pid;
	bpf_loop(nmsgs < HT_MAX_MMSG ? nmsgs : HT_MAX_MMSG, mmsg__step, NULL, 0);
	s = scratch__get();
	if (!s || s->mmsg.lost)
		goto lost;
	if (c->proto == PROTO_IGNORED)
		return;
#pragma clang loop unroll(disable)
	for (i = HT_MAX_MMSG; i < 64; i++) {
		if (i >= nmsgs)
			break;
		if (bpf_probe_read_user(&m, sizeof(m), (void *)(a->buf + i * sizeof(m))))
			goto lost;
		rest += m.msg_len;
	}
	if (nmsgs > 64)
		goto lost;
	if (rest) {
		struct ht_conn_id id = {.tgid = key->tgid, .fd = key->fd, .gen = c->gen};
		__u64 pos = __sync_fetch_and_add(&c->pos[a->dir & 1], rest);

		if (c->proto == PROTO_HTTP)
			emit__skip(&id, a->dir, a->sys, 0, pos, rest, (__u32)task->pid);
	}
	return;
lost:
	/* Byte positions can no longer be trusted: stop tracing the connection. */
	conn__ignore(key, c, HT_CLOSE_DISABLED);
}

/*
 * The user registers saved at the syscall's entry. With untrusted_loads,
 * without a helper call once pt_regs_offset is known.
 */
static __always_inline struct pt_regs *conn__regs(struct task_struct *task, bool untrusted_loads)
{
	struct pt_regs *regs;
	__u64 off = pt_regs_offset;

	if (untrusted_loads && off)
		return bpf_rdonly_cast((void *)((__u64)task->stack + off),
				       bpf_core_type_id_kernel(struct pt_regs));
	regs = (struct pt_regs *)bpf_task_pt_regs(task);
	if (untrusted_loads)
		pt_regs_offset = (__u64)regs - (__u64)task->stack;
	return regs;
}

#define HT_PF_KTHREAD 0x00200000 /* task->flags: a kernel thread */

/* The number of the syscall the task is in, from its saved registers. */
#if defined(__TARGET_ARCH_x86)
#define HT_REGS_SYSCALL_NR(regs) ((long)(regs)->orig_ax)
#elif defined(__TARGET_ARCH_arm64)
#define HT_REGS_SYSCALL_NR(regs) ((long)(regs)->syscallno)
#else
#error "HT_REGS_SYSCALL_NR: unknown architecture"
#endif

/* The syscall's arguments, read back from its saved registers. */
static __always_inline void conn__args(struct pt_regs *regs, struct syscall_args *a)
{
	/* Direct loads through the BTF pointer where the arch allows (x86). */
	a->fd = (__s32)PT_REGS_PARM1_SYSCALL(regs);
	a->buf = PT_REGS_PARM2_SYSCALL(regs);
	a->count = PT_REGS_PARM3_SYSCALL(regs);
	if (a->sys == HT_SYS_RECVFROM || a->sys == HT_SYS_RECVMMSG)
		a->flags = PT_REGS_PARM4_SYSCALL(regs);
	else if (a->sys == HT_SYS_RECVMSG)
		a->flags = a->count;
}

/* The payload kind of syscall nr (targ_sys_kind), 0 for none. */
static __always_inline __u8 conn__sys_kind(long nr)
{
	__u32 idx = (__u32)nr;

	if (nr < 0 || nr >= HT_MAX_SYSCALL_NR)
		return 0;
	barrier_var(idx);
	return targ_sys_kind[idx & (HT_MAX_SYSCALL_NR - 1)];
}

/* Whether the socket tracepoints carry sys (HT_SYS_ON_SOCK_TRACEPOINTS). */
static __always_inline bool conn__sys_on_sock_tracepoints(__u8 sys)
{
	return sys < 32 && ((HT_SYS_ON_SOCK_TRACEPOINTS >> sys) & 1);
}

/*
 * splice(fd_in, off_in, fd_out, ...) moved bytes between a socket and a pipe
 * without passing them through user memory (HAProxy forwarding bodies, Go's
 * io.Copy between connections): like sendfile's, they are announced as
 * skipped, so the stream's positions stay right. Only connections already
 * tracked: one first seen here is found at its next read or write.
 */
static __always_inline void conn__splice(struct task_struct *task, const struct syscall_args *a,
					 long ret)
{
	struct payload_src src = {.total = ret, .tid = (__u32)task->pid, .discarded = 1};
	struct ht_conn_key key = {.tgid = task->tgid, .fd = a->fd};
	struct ht_conn_state *c = conn__lookup(task, &key);
	__u8 dir = HT_DIR_INGRESS;

	if (!c) {
		key.fd = (__s32)a->count; /* fd_out, the third argument */
		dir = HT_DIR_EGRESS;
		c = conn__lookup(task, &key);
	}
	if (c && c->proto == PROTO_ALIAS)
		c = conn__primary(task, &key, c);
	/* On a TLS connection these are ciphertext bytes: not the plaintext stream. */
	if (c && c->proto != PROTO_IGNORED && !c->tls)
		conn__data(&key, c, dir, HT_SYS_SPLICE, &src);
}

/*
 * A read into buf on fd, a socket that is neither HTTP nor TLS yet, in a
 * process that drives libssl through memory BIOs: if the bytes begin with a
 * TLS record header (content type 20-23, version 3.x), the thread's next
 * libssl call may be fed from them, and learns its socket from this note
 * (tls__membio). A global function, verified once on its own.
 */
__attribute__((noinline)) int tls__note_read(__u32 tgid, __s32 fd, __u64 buf)
{
	struct tls_read r = {.fd = fd};
	__u64 id = bpf_get_current_pid_tgid();
	__u8 hdr[3];

	if (!bpf_map_lookup_elem(&membio_tgids, &tgid))
		return 0;
	if (bpf_probe_read_user(hdr, sizeof(hdr), (void *)buf))
		return 0;
	if (hdr[0] < 20 || hdr[0] > 23 || hdr[1] != 3 || hdr[2] > 4)
		return 0;
	r.ts_ns = bpf_ktime_get_ns();
	bpf_map_update_elem(&tls_last_read, &id, &r, BPF_ANY);
	return 0;
}

/*
 * A syscall that moved payload: at its exit (sk NULL, nr the syscall), or, on
 * the socket tracepoints, inside it, right after the socket took or gave the
 * bytes (sk the socket, nr unused: read from the saved registers). Either way
 * the arguments are still in the saved registers, so there is no entry hook
 * and no per-thread stash, and a syscall that was already blocked when the
 * daemon started (a server waiting in recv() on a keep-alive connection) is
 * still seen when it returns.
 */
static __always_inline int conn__exit_data(long nr, long ret, bool untrusted_loads,
					   struct sock *sk, bool rest_only)
{
	/* Known at compile time in each program: the socket tracepoints
	 * never carry splice or the mmsg calls, so their programs are built
	 * without that code (less for the verifier to walk). */
	const bool sock_tp = sk != NULL;
	struct payload_src src = {};
	struct syscall_args a = {};
	struct ht_conn_key key;
	struct ht_conn_state *c;
	struct task_struct *task;
	struct pt_regs *regs;

	if (tracing_stopped || ret <= 0)
		return 0;
	if (!sock_tp) {
		a.sys = conn__sys_kind(nr);
		if (a.sys == 0 || (rest_only && conn__sys_on_sock_tracepoints(a.sys)))
			return 0;
	}
	task = bpf_get_current_task_btf();
	key.tgid = task->tgid;
	if (!filter__pid_allowed(key.tgid))
		return 0;
	regs = conn__regs(task, untrusted_loads);
	if (sock_tp) {
		/* A kernel thread's socket I/O (NFS, ...) is no syscall of a
		 * process; io_uring's, sendfile's and the like are not listed. */
		if (task->flags & HT_PF_KTHREAD)
			return 0;
		a.sys = conn__sys_kind(HT_REGS_SYSCALL_NR(regs));
		if (!conn__sys_on_sock_tracepoints(a.sys))
			return 0;
	}
	conn__args(regs, &a);
	/* MSG_PEEK leaves the bytes in the socket: the read that takes them is
	 * the one that counts (a server sniffing TLS or HTTP/2 on its first bytes). */
	if (a.fd < 0 || (a.flags & HT_MSG_PEEK))
		return 0;
	if (!sock_tp && a.sys == HT_SYS_SPLICE) {
		conn__splice(task, &a, ret);
		return 0;
	}
	if (untrusted_loads && !sock__fd_may_be_traced(task, a.fd, sk))
		return 0;
	key.fd = a.fd;
	c = conn__lookup(task, &key);
	if (!c)
		c = conn__create(task, &key, HT_ORIGIN_DISCOVERED, HT_ROLE_UNKNOWN);
	if (c && c->proto == PROTO_ALIAS)
		c = conn__primary(task, &key, c);
	if (!c)
		return 0;
	/* Plain HTTP connections pass on: only a TLS or undecided one may be
	 * carrying a libssl call's records. */
	if (targ_tls && (c->tls || (tls_calls_active && c->proto != PROTO_HTTP))) {
		/* Ciphertext outside any libssl call (a handshake before we
		 * started, close_notify) is dropped without a lookup. */
		if (c->tls && !tls_calls_active)
			return 0;
		if (tls__nested(key.tgid, key.fd))
			return 0;
	}
	if (!rest_only && membio_seen && targ_tls && !c->tls && c->proto != PROTO_HTTP &&
	    (a.sys == HT_SYS_READ || a.sys == HT_SYS_RECVFROM))
		tls__note_read(key.tgid, key.fd, a.buf);
	if (c->proto == PROTO_IGNORED)
		return 0;
	a.dir = (a.sys == HT_SYS_READ || a.sys == HT_SYS_READV || a.sys == HT_SYS_RECVFROM ||
		 a.sys == HT_SYS_RECVMSG || a.sys == HT_SYS_RECVMMSG)
			? HT_DIR_INGRESS
			: HT_DIR_EGRESS;
	if (!sock_tp && (a.sys == HT_SYS_RECVMMSG || a.sys == HT_SYS_SENDMMSG)) {
		conn__mmsg(task, &key, c, &a, ret);
		return 0;
	}
	if (rest_only) {
		/* Left: sendfile, whose bytes never pass through user memory. */
		src.buf = a.buf;
		src.discarded = 1;
	} else switch (a.sys) {
	case HT_SYS_READV:
	case HT_SYS_WRITEV:
		src.iov = a.buf;
		src.iovcnt = a.count;
		break;
	case HT_SYS_RECVMSG:
	case HT_SYS_SENDMSG: {
		struct user_msghdr msg;

		if (bpf_probe_read_user(&msg, sizeof(msg), (void *)a.buf))
			return 0;
		src.iov = (__u64)msg.msg_iov;
		src.iovcnt = msg.msg_iovlen;
		break;
	}
	default:
		src.buf = a.buf;
		break;
	}
	src.total = ret;
	src.tid = (__u32)task->pid;
	if (!rest_only && (a.flags & HT_MSG_TRUNC) && !c->is_unix) {
		/* TCP discards the bytes without copying them: nothing to read.
		 * (A Unix stream socket ignores the flag and copies them.) */
		src.discarded = 1;
		src.buf = 0;
		src.iov = 0;
	}
	conn__data(&key, c, a.dir, a.sys, &src);
	return 0;
}

/* connect() (or its non-blocking start) succeeded: a client connection. */
static __always_inline int conn__exit_connect(long ret)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct syscall_args a = {};
	struct ht_conn_key key = {.tgid = task->tgid};

	if (tracing_stopped || (ret != 0 && ret != -HT_EINPROGRESS) ||
	    !filter__pid_allowed(key.tgid))
		return 0;
	conn__args(conn__regs(task, false), &a);
	key.fd = a.fd;
	if (key.fd >= 0)
		conn__open(task, &key, HT_ORIGIN_CONNECT, HT_ROLE_CLIENT);
	return 0;
}

#endif /* HTTPTRACED_CONN_BPF_H */
