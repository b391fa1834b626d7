/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * From a file descriptor to its stream socket (TCP, or Unix domain), in the
 * kernel: task -> files -> fdtable -> file -> socket -> sock. This is how
 * connections opened before the daemon started are picked up at their next
 * read or write.
 */
#ifndef HTTPTRACED_SOCK_BPF_H
#define HTTPTRACED_SOCK_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "maps.bpf.h"

#define HT_AF_UNIX 1
#define HT_AF_INET 2
#define HT_AF_INET6 10
#define HT_IPPROTO_TCP 6
#define HT_SOCK_STREAM 1
#define HT_S_IFMT 00170000
#define HT_S_IFSOCK 0140000

/* Start time of the task's process: with the tgid, an identity that pid reuse
 * cannot fake. Direct loads through the BTF task pointer, no helper calls.
 * `task` is always bpf_get_current_task_btf(), fetched once per program run
 * and passed down, as helper calls are what a run mostly costs. */
static __always_inline __u64 task__proc_start(struct task_struct *task)
{
	return task->group_leader->start_time;
}

/*
 * How many times the process has called execve(): close-on-exec fds were
 * closed by the last one without a close() for the tracer to see, so an entry
 * made under an earlier image is stale even though the tgid and start time
 * are unchanged (exec keeps both).
 */
static __always_inline __u32 task__exec_id(struct task_struct *task)
{
	return (__u32)task->group_leader->self_exec_id;
}

static __always_inline bool filter__pid_allowed(__u32 tgid)
{
	if (tgid == targ_self_tgid)
		return false;
	if (!targ_npids)
		return true;
	for (int i = 0; i < HT_MAX_FILTER; i++) {
		if (i >= targ_npids)
			break;
		if (targ_pids[i] == tgid)
			return true;
	}
	return false;
}

static __always_inline bool filter__port_allowed(__u16 lport, __u16 rport)
{
	if (!targ_nports)
		return true;
	for (int i = 0; i < HT_MAX_FILTER; i++) {
		if (i >= targ_nports)
			break;
		if (targ_ports[i] == lport || targ_ports[i] == rport)
			return true;
	}
	return false;
}

/*
 * Sockets carrying byte streams HTTP/1.x runs over: TCP over IPv4 or IPv6,
 * and Unix domain stream sockets unless --unix_sockets=false (SOCK_SEQPACKET
 * keeps message boundaries; datagram sockets have no connection).
 */
static __always_inline bool sock__traced_kind(__u16 family, __u16 type, __u16 protocol)
{
	if (type != HT_SOCK_STREAM)
		return false;
	if (family == HT_AF_INET || family == HT_AF_INET6)
		return protocol == HT_IPPROTO_TCP;
	return family == HT_AF_UNIX && targ_unix_sockets;
}

/*
 * The struct sock behind fd if it is a socket sock__traced_kind() accepts,
 * else NULL. This
 * runs for every successful read/write on a file that is not a known
 * connection, so the walk down to the fd table is direct loads through the BTF
 * task pointer; only the fd slot and the file need probe reads.
 */
static __always_inline struct sock *sock__from_fd(struct task_struct *task, __s32 fd)
{
	struct fdtable *fdt = task->files->fdt;
	struct file **fds = fdt->fd;
	struct file *file = NULL;
	struct socket *sock;
	struct sock *sk;
	__u64 fops;

	if (fd < 0 || (unsigned int)fd >= fdt->max_fds)
		return NULL;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return NULL;
	/*
	 * Every socket file has the same file operations (socket_file_ops). Once
	 * one traced socket has shown their address, one read of f_op tells a file,
	 * pipe or eventfd apart; until then, the inode's mode does (two reads).
	 * Only trust private_data once either says this is a socket.
	 */
	fops = (__u64)BPF_CORE_READ(file, f_op);
	if (sock_fops) {
		if (fops != sock_fops)
			return NULL;
	} else if ((BPF_CORE_READ(file, f_inode, i_mode) & HT_S_IFMT) != HT_S_IFSOCK) {
		return NULL;
	}
	sock = BPF_CORE_READ(file, private_data);
	if (!sock)
		return NULL;
	sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return NULL;
	if (!sock__traced_kind(BPF_CORE_READ(sk, __sk_common.skc_family),
			       BPF_CORE_READ(sk, sk_type), BPF_CORE_READ(sk, sk_protocol)))
		return NULL;
	if (!sock_fops)
		sock_fops = fops;
	return sk;
}

/*
 * Free of helper calls, for the variant of the payload program loaded where
 * the kernel lets a program read untrusted kernel memory with plain loads
 * (BPF_FEAT_RDONLY_CAST_TO_VOID, Linux 6.16): false when fd is certainly not
 * a traced socket, so a file, pipe, tty or datagram socket read or write is
 * dropped before the connection lookup and the fd-table probe reads
 * (sock__from_fd). True when it is one (the same checks as sock__from_fd)
 * and, if want is given (a socket tracepoint's socket), it is that socket.
 */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;

static __always_inline bool sock__fd_may_be_traced(struct task_struct *task, __s32 fd,
						   const struct sock *want)
{
	struct fdtable *fdt = task->files->fdt;
	__u64 fops = sock_fops;
	struct socket *sock;
	struct file **fds;
	struct file *file;
	struct sock *sk;

	if ((unsigned int)fd >= fdt->max_fds)
		return false;
	fds = fdt->fd;  /* read-only untrusted memory: a faulting load gives 0 */
	file = fds[fd]; /* a plain value... */
	if (!file)
		return false;
	/* ...typed again (the verifier turns the cast into a move) */
	file = bpf_rdonly_cast(file, bpf_core_type_id_kernel(struct file));
	if (fops) {
		if ((__u64)file->f_op != fops)
			return false;
	} else if ((file->f_inode->i_mode & HT_S_IFMT) != HT_S_IFSOCK) {
		return false; /* no socket traced yet (an idle host): the mode says */
	}
	sock = bpf_rdonly_cast(file->private_data, bpf_core_type_id_kernel(struct socket));
	sk = sock->sk;
	if (want && (__u64)sk != (__u64)want)
		return false; /* another socket's I/O inside this syscall */
	return sk && sock__traced_kind(sk->__sk_common.skc_family, sk->sk_type, sk->sk_protocol);
}

static __always_inline void sock__ports(struct sock *sk, __u16 *lport, __u16 *rport)
{
	*lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	*rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
}

/*
 * Copies a Unix domain socket's name (sun_path, without the family in
 * front) into out; its length, 0 when the socket has none.
 */
static __always_inline __u8 sock__unix_name(struct unix_address *addr, char *out)
{
	__u64 n;
	int len;

	if (!addr)
		return 0;
	len = BPF_CORE_READ(addr, len); /* with the 2-byte sun_family */
	if (len <= 2)
		return 0;
	n = (__u32)(len - 2);
	if (n > HT_UNIX_PATH_MAX)
		n = HT_UNIX_PATH_MAX;
	/* No-op past the clamp; the verifier keeps the bound through it
	 * where clang compares a copy of n and passes the original. */
	n &= 127;
	barrier_var(n);
	if (bpf_probe_read_kernel(out, n, &addr->name[0].sun_path))
		return 0;
	return n;
}

/* Fills the address part of an open event from the socket. */
static __always_inline void sock__fill_endpoints(struct sock *sk, struct ht_conn_event *ev)
{
	ev->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (ev->family == HT_AF_UNIX) {
		/* An accepted socket carries its listener's name; the peer is the
		 * other end's socket, which the connecting end names this way. */
		struct unix_sock *u = (struct unix_sock *)sk;
		struct unix_sock *peer = (struct unix_sock *)BPF_CORE_READ(u, peer);

		struct pid *peer_pid = BPF_CORE_READ(sk, sk_peer_pid);

		ev->local_path_len = sock__unix_name(BPF_CORE_READ(u, addr), ev->local_path);
		if (peer)
			ev->remote_path_len = sock__unix_name(BPF_CORE_READ(peer, addr),
							      ev->remote_path);
		if (peer_pid)
			ev->peer_pid = BPF_CORE_READ(peer_pid, numbers[0].nr);
		return;
	}
	sock__ports(sk, &ev->local_port, &ev->remote_port);
	if (ev->family == HT_AF_INET) {
		bpf_core_read(ev->local_addr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(ev->remote_addr, 4, &sk->__sk_common.skc_daddr);
	} else {
		bpf_core_read(ev->local_addr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(ev->remote_addr, 16, &sk->__sk_common.skc_v6_daddr);
	}
}

/* The open file behind fd (one probe read), or NULL. */
static __always_inline struct file *sock__file_of(struct task_struct *task, __s32 fd)
{
	struct fdtable *fdt = task->files->fdt;
	struct file *file = NULL;

	if (fd < 0 || (unsigned int)fd >= fdt->max_fds)
		return NULL;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fdt->fd[fd]))
		return NULL;
	return file;
}

/*
 * A process started by inetd or a systemd socket unit with Accept=yes has
 * its connection as standard input and output (and maybe error): requests
 * read on fd 0, responses written on fd 1, one open file. When a socket is
 * first seen on fd 0, 1 or 2 and another of those is the same file with an
 * entry already, the new entry only points there (PROTO_ALIAS): both fds
 * then share one connection, its positions and its events.
 */
struct find_primary_ctx {
	struct file *mine;
	__u64 proc_start;
	__u32 tgid;
	__u32 exec_id;
	__s32 fd;
	__s32 found; /* the primary's fd, or -1 */
};

/* One candidate fd (bpf_loop step: verified once, not on every path). */
static long conn__find_primary_step(__u32 i, void *arg)
{
	struct find_primary_ctx *f = arg;
	struct ht_conn_key k = {.tgid = f->tgid, .fd = (__s32)i};
	struct ht_conn_state *o;

	if (k.fd == f->fd)
		return 0;
	o = bpf_map_lookup_elem(&conns, &k);
	if (!o || o->proto == PROTO_ALIAS || o->proc_start != f->proc_start ||
	    o->exec_id != f->exec_id ||
	    sock__file_of(bpf_get_current_task_btf(), k.fd) != f->mine)
		return 0;
	f->found = k.fd;
	return 1;
}

static __always_inline void conn__find_primary(struct task_struct *task,
					       const struct ht_conn_key *key,
					       struct ht_conn_state *st)
{
	struct find_primary_ctx f = {
		.mine = sock__file_of(task, key->fd),
		.proc_start = st->proc_start,
		.tgid = key->tgid,
		.exec_id = st->exec_id,
		.fd = key->fd,
		.found = -1,
	};

	if (!f.mine)
		return;
	bpf_loop(3, conn__find_primary_step, &f, 0);
	if (f.found >= 0) {
		st->proto = PROTO_ALIAS;
		st->alias_fd = f.found;
	}
}

/*
 * Enters a connection into the map. Sockets that are not traced get no entry;
 * traced ones outside the port filter (Unix domain sockets have no port) get
 * an IGNORED entry so that their later syscalls cost one lookup. With
 * --unix_path, Unix sockets pass: userspace matches their names, and stops
 * the others at their open event.
 */
static __always_inline struct ht_conn_state *conn__create(struct task_struct *task,
							const struct ht_conn_key *key, __u8 origin,
							__u8 role)
{
	struct sock *sk = sock__from_fd(task, key->fd);
	struct ht_conn_state st = {};
	__u16 lport, rport;

	if (!sk)
		return NULL;
	sock__ports(sk, &lport, &rport);
	st.gen = bpf_ktime_get_ns();
	st.proc_start = task__proc_start(task);
	st.exec_id = task__exec_id(task);
	st.origin = origin;
	st.role = role;
	st.is_unix = BPF_CORE_READ(sk, __sk_common.skc_family) == HT_AF_UNIX;
	st.proto = (st.is_unix && targ_unix_by_name) || filter__port_allowed(lport, rport)
			   ? PROTO_UNKNOWN
			   : PROTO_IGNORED;
	if (origin == HT_ORIGIN_DISCOVERED && key->fd >= 0 && key->fd <= 2)
		conn__find_primary(task, key, &st);
	if (bpf_map_update_elem(&conns, key, &st, BPF_ANY))
		return NULL;
	counters__add(HT_CNT_CONNS_SEEN, 1);
	return bpf_map_lookup_elem(&conns, key);
}

#endif /* HTTPTRACED_SOCK_BPF_H */
