/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * TLS plaintext at libssl: uprobes on SSL_read/SSL_write (and their _ex
 * forms) see the bytes before encryption and after decryption.
 *
 * At entry a thread's call is noted (tls_calls); the TLS records it reads or
 * writes meanwhile go through the payload syscall hooks, which give the call
 * its socket (tls__nested) and make the connection a TLS one. At return the
 * plaintext is traced as that connection's payload, with positions of its
 * own: the same path as a plain connection's read or write from there on.
 * A read that libssl serves from its buffer, with no syscall, finds the
 * socket the SSL object last used (tls_fds). Handshake calls are noted only
 * to learn the socket before the first byte of plaintext.
 *
 * A process that drives libssl through memory BIOs (Node.js) makes no
 * syscall inside its libssl calls: it reads TLS records from the socket
 * itself, then hands them to libssl. Once one of its calls finds no socket,
 * its reads of TLS records are noted per thread (tls__note_read), and the
 * thread's next libssl call, if its SSL object has no known socket, takes the
 * one just read from (tls__membio). Such a program hands the records it read
 * to their SSL object at once, and that object's calls come first: Node's
 * TLSWrap writes pending plaintext (SSL_write, which may finish a client's
 * handshake) and reads (SSL_read) right after each socket read; so the note
 * serves the first call after the read, whatever it is, and no later one.
 */
#ifndef HTTPTRACED_TLS_BPF_H
#define HTTPTRACED_TLS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "conn.bpf.h"

static __always_inline int tls__enter(struct pt_regs *ctx, __u8 op)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct tls_call call = {.fd = -1, .op = op}, *old;

	if (tracing_stopped || !filter__pid_allowed(id >> 32))
		return 0;
	call.ssl = PT_REGS_PARM1(ctx);
	call.buf = PT_REGS_PARM2(ctx);
	if (op == TLS_OP_READ_EX || op == TLS_OP_WRITE_EX)
		call.done_ptr = PT_REGS_PARM4(ctx);
	old = bpf_map_lookup_elem(&tls_calls, &id);
	if (old) {
		/* SSL_connect calls SSL_do_handshake: the outer note stays. A data
		 * call replaces whatever a thread killed inside a call left. */
		if (op != TLS_OP_HANDSHAKE)
			*old = call;
		return 0;
	}
	if (bpf_map_update_elem(&tls_calls, &id, &call, BPF_NOEXIST) == 0)
		__sync_fetch_and_add(&tls_calls_active, 1);
	return 0;
}

/* Ends the thread's note of its libssl call. */
static __always_inline void tls__end_call(__u64 id)
{
	if (bpf_map_delete_elem(&tls_calls, &id) == 0)
		__sync_fetch_and_sub(&tls_calls_active, 1);
}

/* How long after a thread's read of TLS records a libssl call may take its
 * socket (tls__membio): the call follows the read in the same callback. */
#define HT_MEMBIO_WINDOW_NS 10000000ULL

/*
 * The socket of a libssl call that made no syscall, fd when its SSL object's
 * is known (tls_fds), else -1. The thread's note of its last read of TLS
 * records is taken (one note serves one call at most): a call on an unknown
 * SSL object takes that socket, if the note is recent and the socket is no
 * other SSL object's yet, and the SSL object is tied to it. A call that finds
 * no socket marks its process as one using memory BIOs.
 */
static __always_inline __s32 tls__membio(__u64 id, struct tls_fd_key *fk, __s32 fd)
{
	struct ht_conn_key key = {.tgid = id >> 32};
	struct ht_conn_state *c;
	struct tls_read *r;
	__s32 noted = -1;
	__u64 ts = 0;
	__u8 one = 1;

	if (membio_seen) {
		r = bpf_map_lookup_elem(&tls_last_read, &id);
		if (r) {
			noted = r->fd;
			ts = r->ts_ns;
			bpf_map_delete_elem(&tls_last_read, &id);
		}
	}
	if (fd >= 0)
		return fd;
	if (!bpf_map_lookup_elem(&membio_tgids, &key.tgid)) {
		bpf_map_update_elem(&membio_tgids, &key.tgid, &one, BPF_ANY);
		membio_seen = 1;
	}
	if (noted < 0 || bpf_ktime_get_ns() - ts > HT_MEMBIO_WINDOW_NS)
		return -1;
	key.fd = noted;
	c = bpf_map_lookup_elem(&conns, &key);
	if (!c || c->tls)
		return -1;
	bpf_map_update_elem(&tls_fds, fk, &noted, BPF_ANY);
	return noted;
}

/* The socket of a call whose own syscalls did not show it: its SSL object's,
 * or for memory BIOs the one just read from (tls__membio); -1 if none. */
static __always_inline __s32 tls__call_fd(__u64 id, const struct tls_call *call,
					  struct tls_fd_key *fk)
{
	__s32 *known;

	fk->ssl = call->ssl;
	known = bpf_map_lookup_elem(&tls_fds, fk);
	return tls__membio(id, fk, known ? *known : -1);
}

/* The end of a handshake call: its note goes, not a data call's. */
static __always_inline int tls__handshake_return(void)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct tls_call *p = bpf_map_lookup_elem(&tls_calls, &id);
	struct tls_fd_key fk = {.tgid = id >> 32};
	struct tls_call call;

	if (!p || p->op != TLS_OP_HANDSHAKE)
		return 0;
	call = *p;
	tls__end_call(id);
	/* With memory BIOs: learn the socket before the first plaintext. */
	if (!tracing_stopped && call.fd < 0)
		tls__call_fd(id, &call, &fk);
	return 0;
}

/* The connection a TLS call's plaintext belongs to, made a TLS one if needed. */
static __always_inline struct ht_conn_state *tls__claim(struct task_struct *task,
						      struct ht_conn_key *key)
{
	struct ht_conn_state *c = conn__lookup(task, key);

	if (c && c->tls)
		return c;
	return tls__convert(task, key, c);
}

/* The end of SSL_read/SSL_write(_ex): its plaintext, if any, is traced. */
static __always_inline int tls__data_return(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct tls_call *p = bpf_map_lookup_elem(&tls_calls, &id);
	struct payload_src src = {};
	struct tls_fd_key fk = {.tgid = id >> 32};
	struct ht_conn_key key = {.tgid = id >> 32};
	struct task_struct *task;
	struct ht_conn_state *c;
	struct tls_call call;
	int ret = (int)PT_REGS_RC(ctx);
	__u64 len = 0;
	__u8 dir;

	if (!p)
		return 0;
	call = *p;
	tls__end_call(id);
	if (tracing_stopped || call.op == TLS_OP_HANDSHAKE)
		return 0;
	/* Before the byte count: a read that only advanced a handshake (no
	 * plaintext yet) still ties a memory-BIO SSL object to its socket. */
	key.fd = call.fd;
	if (key.fd < 0)
		key.fd = tls__call_fd(id, &call, &fk);
	if (call.op == TLS_OP_READ_EX || call.op == TLS_OP_WRITE_EX) {
		if (ret != 1 || !call.done_ptr ||
		    bpf_probe_read_user(&len, sizeof(len), (void *)call.done_ptr))
			return 0;
	} else if (ret > 0) {
		len = ret;
	}
	if (len == 0 || len > 0x7fffffffULL)
		return 0;
	if (key.fd < 0) {
		/* A memory BIO whose socket is not known yet, or an SSL object
		 * whose handshake was before we started. */
		counters__add(HT_CNT_TLS_NO_FD, 1);
		return 0;
	}
	task = bpf_get_current_task_btf();
	c = tls__claim(task, &key);
	if (!c || c->proto == PROTO_IGNORED || c->proto == PROTO_ALIAS)
		return 0;
	dir = call.op == TLS_OP_READ || call.op == TLS_OP_READ_EX ? HT_DIR_INGRESS : HT_DIR_EGRESS;
	src.buf = call.buf;
	src.total = len;
	src.tid = (__u32)id;
	conn__data(&key, c, dir, dir == HT_DIR_INGRESS ? HT_SYS_SSL_READ : HT_SYS_SSL_WRITE, &src);
	return 0;
}

#endif /* HTTPTRACED_TLS_BPF_H */
