// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * httptraced kernel side: per-syscall tracepoints only (cheaper than
 * raw_syscalls, which fire for every syscall). Payload syscalls are handled at
 * exit, where the result is known and the arguments are still in the saved
 * user registers; close/dup2/dup3 at entry, while the fd is still theirs.
 * Everything that is not a TCP socket is dropped on the first lookups.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "conn.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/*
 * One program for the exit of every payload syscall (read, write, readv,
 * writev, recvfrom, sendto, recvmsg, sendmsg, recvmmsg, sendmmsg, sendfile64):
 * the daemon attaches it to each sys_exit_<name> and fills targ_sys_kind, so
 * the kernel verifies it once.
 */
SEC("tracepoint")
int sys_exit_payload(struct trace_event_raw_sys_exit *ctx)
{
	/* The format has a 4-byte __syscall_nr where vmlinux.h says long id. */
	return conn__exit_data((int)ctx->id, ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_connect")
int sys_exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	return conn__exit_connect(ctx->ret);
}

static __always_inline int accept_exit(long ret)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct ht_conn_key key = {.tgid = task->tgid, .fd = (__s32)ret};

	if (tracing_stopped || ret < 0 || !filter__pid_allowed(key.tgid))
		return 0;
	conn__open(task, &key, HT_ORIGIN_ACCEPT, HT_ROLE_SERVER);
	return 0;
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
	return 0;
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
		return 0;
	return forget_fd((__s32)ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_dup3")
int sys_enter_dup3(struct trace_event_raw_sys_enter *ctx)
{
	return forget_fd((__s32)ctx->args[1]);
}
