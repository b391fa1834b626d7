// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * httptraced kernel side: per-syscall tracepoints only. One BTF tracepoint on
 * raw_syscalls/sys_exit for all of them was measured (docs/performance.md):
 * it runs for every syscall of every process, which cost getppid() about
 * 110 ns more per call, for 0 to 50 ns less per traced read or write.
 * Payload syscalls are handled at
 * exit, where the result is known and the arguments are still in the saved
 * user registers; close/dup2/dup3 at entry, while the fd is still theirs.
 * Everything that is not a TCP or Unix stream socket is dropped on the first
 * lookups.
 *
 * A program on a tracepoint decides by its return value whether the event
 * goes on to perf: 0 would hide it from every `perf stat`/`perf record` of
 * the host's other users (a close() or an accept4() that perf never counts).
 * Ours only observe, so every tracepoint program returns TP_PASS.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "conn.bpf.h"
#include "tls.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The event goes on to perf's own users (none costs ours nothing). */
#define TP_PASS 1

/*
 * One program for the exit of every payload syscall (read, write, readv,
 * writev, recvfrom, sendto, recvmsg, sendmsg, recvmmsg, sendmmsg, sendfile64,
 * splice):
 * the daemon attaches it to each sys_exit_<name> and fills targ_sys_kind, so
 * the kernel verifies it once.
 */
SEC("tracepoint")
int sys_exit_payload(struct trace_event_raw_sys_exit *ctx)
{
	/* The format has a 4-byte __syscall_nr where vmlinux.h says long id. */
	conn__exit_data((int)ctx->id, ctx->ret, false, NULL, false);
	return TP_PASS;
}

/*
 * The same, for kernels that allow plain loads of untrusted kernel memory
 * (Linux 6.16): a non-socket fd is dropped with no helper call after the
 * saved registers (sock__fd_may_be_traced). The daemon loads one of the three
 * exit programs.
 */
SEC("tracepoint")
int sys_exit_payload_fast(struct trace_event_raw_sys_exit *ctx)
{
	conn__exit_data((int)ctx->id, ctx->ret, true, NULL, false);
	return TP_PASS;
}

/*
 * The fast one again, for the syscalls left on their exits when the socket
 * tracepoints carry the others: sendfile, splice, recvmmsg and sendmmsg. Built
 * without the flat, iovec and msghdr payload paths those never take, it gives
 * the verifier less than half the instructions to walk, the longest load of
 * the start-up.
 */
SEC("tracepoint")
int sys_exit_payload_rest(struct trace_event_raw_sys_exit *ctx)
{
	conn__exit_data((int)ctx->id, ctx->ret, true, NULL, true);
	return TP_PASS;
}

/*
 * The same payload, taken where the socket layer sends or receives it
 * (sock_sendmsg, sock_recvmsg: Linux 6.4) rather than at the syscall's exit:
 * these fire for socket I/O only, so files, pipes and ttys run nothing of
 * ours, and a BTF tracepoint runs its program with none of the per-syscall
 * tracepoint's plumbing (about 200 ns a call here: bench/README.md, "Hook
 * cost"). The syscall (read, write, readv, writev, recvfrom, sendto, recvmsg,
 * sendmsg) and its arguments come from the saved registers, and the socket
 * must be the one its fd names. Loaded with sys_exit_payload_rest for the
 * syscalls these do not carry (conn__sys_on_sock_tracepoints).
 */
SEC("tp_btf/sock_send_length")
int BPF_PROG(sock_send_payload, struct sock *sk, int ret, int flags)
{
	if (!sk)
		return 0;
	return conn__exit_data(0, ret, true, sk, false);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(sock_recv_payload, struct sock *sk, int ret, int flags)
{
	if (!sk)
		return 0;
	return conn__exit_data(0, ret, true, sk, false);
}

SEC("tracepoint/syscalls/sys_exit_connect")
int sys_exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	conn__exit_connect(ctx->ret);
	return TP_PASS;
}

static __always_inline int accept_exit(long ret)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct ht_conn_key key = {.tgid = task->tgid, .fd = (__s32)ret};

	if (tracing_stopped || ret < 0 || !filter__pid_allowed(key.tgid))
		return TP_PASS;
	conn__open(task, &key, HT_ORIGIN_ACCEPT, HT_ROLE_SERVER);
	return TP_PASS;
}

SEC("tracepoint/syscalls/sys_exit_accept")
int sys_exit_accept(struct trace_event_raw_sys_exit *ctx)
{
	return accept_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int sys_exit_accept4(struct trace_event_raw_sys_exit *ctx)
{
	return accept_exit(ctx->ret);
}

/* close(fd), and dup2/dup3 which close their target fd implicitly. */
static __always_inline int forget_fd(__s32 fd)
{
	struct ht_conn_key key = {.tgid = bpf_get_current_pid_tgid() >> 32, .fd = fd};

	if (fd >= 0 && !tracing_stopped)
		conn__forget(&key);
	return TP_PASS;
}

SEC("tracepoint/syscalls/sys_enter_close")
int sys_enter_close(struct trace_event_raw_sys_enter *ctx)
{
	return forget_fd((__s32)ctx->args[0]);
}

SEC("tracepoint/syscalls/sys_enter_dup2")
int sys_enter_dup2(struct trace_event_raw_sys_enter *ctx)
{
	if (ctx->args[0] == ctx->args[1])
		return TP_PASS;
	return forget_fd((__s32)ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_dup3")
int sys_enter_dup3(struct trace_event_raw_sys_enter *ctx)
{
	return forget_fd((__s32)ctx->args[1]);
}

#define HT_CLOSE_RANGE_CLOEXEC (1U << 2)
/* Words of the open-fd bitmap walked per close_range(): 2^20 fds. */
#define HT_CLOSE_RANGE_MAX_WORDS (1U << 14)

struct close_range_walk {
	__u64 *open_fds; /* the fd table's bitmap of open fds (kernel memory) */
	__u32 tgid;
	__u32 first;     /* lowest fd to close */
	__u32 last;      /* highest fd to close, below the table's size */
	__u32 word0;     /* first bitmap word */
};

/* One 64-fd word of the bitmap: forgets the connections on its open fds. */
static long close_range__word(__u32 index, void *ctx)
{
	struct close_range_walk *w = ctx;
	__u32 word = w->word0 + index;
	__u64 bits = 0;
	__u32 base = word * 64;

	if (base > w->last)
		return 1;
	if (bpf_probe_read_kernel(&bits, sizeof(bits), &w->open_fds[word]))
		return 1;
	if (base < w->first)
		bits &= ~0ULL << (w->first - base);
	if (w->last - base < 63)
		bits &= ~0ULL >> (63 - (w->last - base));
	for (int b = 0; b < 64 && bits; b++, bits >>= 1) {
		if (bits & 1) {
			struct ht_conn_key key = {.tgid = w->tgid, .fd = (__s32)(base + b)};

			conn__forget(&key);
		}
	}
	return 0;
}

/*
 * close_range(first, last, flags) closes every open fd in the range with no
 * close() per fd (glibc's closefrom, Python's os.closerange, process
 * spawners). At entry the fds are still open: the table's bitmap says which,
 * and each one's entry is forgotten as close() would. With
 * CLOSE_RANGE_CLOEXEC nothing closes now; the exec that does is caught by
 * the entry's exec count (conn__lookup).
 */
SEC("tracepoint/syscalls/sys_enter_close_range")
int sys_enter_close_range(struct trace_event_raw_sys_enter *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct close_range_walk w = {};
	__u32 first = (__u32)ctx->args[0], last = (__u32)ctx->args[1];
	struct fdtable *fdt;
	__u32 max_fds, words;

	if (tracing_stopped || (ctx->args[2] & HT_CLOSE_RANGE_CLOEXEC) || first > last)
		return TP_PASS;
	w.tgid = task->tgid;
	if (!filter__pid_allowed(w.tgid))
		return TP_PASS;
	fdt = task->files->fdt;
	max_fds = fdt->max_fds;
	if (first >= max_fds)
		return TP_PASS;
	if (last >= max_fds)
		last = max_fds - 1;
	w.open_fds = (__u64 *)fdt->open_fds;
	w.first = first;
	w.last = last;
	w.word0 = first / 64;
	words = last / 64 - w.word0 + 1;
	bpf_loop(words < HT_CLOSE_RANGE_MAX_WORDS ? words : HT_CLOSE_RANGE_MAX_WORDS,
		 close_range__word, &w, 0);
	return TP_PASS;
}

/*
 * The last thread of a process exits (signal->live has dropped to zero by
 * the time this tracepoint fires): its fds are about to close without a
 * close() for the hooks above, so userspace is told to end the process's
 * connections now rather than when they time out.
 */
SEC("tracepoint/sched/sched_process_exit")
int sched_process_exit(void *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct ht_conn_id id = {.tgid = task->tgid, .fd = -1};
	struct ht_exit_event ev = {};

	if (tracing_stopped || (task->flags & HT_PF_KTHREAD) || task->signal->live.counter != 0 ||
	    !filter__pid_allowed(id.tgid))
		return TP_PASS;
	emit__header(&ev.hdr, HT_EV_PROC_EXIT, &id, (__u32)task->pid, bpf_ktime_get_ns());
	ev.proc_start = task__proc_start(task);
	ringbuf__output(&ev, sizeof(ev));
	return TP_PASS;
}

/*
 * libssl (tls.bpf.h). Attached by the daemon to each libssl it finds, for
 * every process that maps it; not loaded with --tls=false.
 */
SEC("uprobe")
int BPF_KPROBE(ssl_read_enter)
{
	return tls__enter(ctx, TLS_OP_READ);
}

SEC("uprobe")
int BPF_KPROBE(ssl_write_enter)
{
	return tls__enter(ctx, TLS_OP_WRITE);
}

SEC("uprobe")
int BPF_KPROBE(ssl_read_ex_enter)
{
	return tls__enter(ctx, TLS_OP_READ_EX);
}

SEC("uprobe")
int BPF_KPROBE(ssl_write_ex_enter)
{
	return tls__enter(ctx, TLS_OP_WRITE_EX);
}

SEC("uprobe")
int BPF_KPROBE(ssl_handshake_enter)
{
	return tls__enter(ctx, TLS_OP_HANDSHAKE);
}

/* SSL_read, SSL_write and their _ex forms. */
SEC("uretprobe")
int BPF_KRETPROBE(ssl_data_return)
{
	return tls__data_return(ctx);
}

/* SSL_do_handshake, SSL_connect, SSL_accept. */
SEC("uretprobe")
int BPF_KRETPROBE(ssl_handshake_return)
{
	return tls__handshake_return();
}
