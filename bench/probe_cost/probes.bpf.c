// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Trivial programs on the hooks a socket tracer could use, for
 * bench/probe_cost/run.sh: what attaching to each hook costs every syscall
 * (the hook's own plumbing, not httptraced's program). Each program only
 * compares the current tgid with one that never runs here, so the figures are
 * those of the attachment. The loader attaches the programs named on its
 * command line.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

__u64 hits;

static __always_inline int touch(void)
{
	if ((bpf_get_current_pid_tgid() >> 32) == 1)
		__sync_fetch_and_add(&hits, 1);
	return 0;
}

/* The per-syscall tracepoints httptraced attaches to today. */
SEC("tracepoint/syscalls/sys_exit_write")
int sys_exit_write(void *ctx) { return touch(); }
SEC("tracepoint/syscalls/sys_exit_read")
int sys_exit_read(void *ctx) { return touch(); }
/* One that never fires in the loops: what merely having one attached costs. */
SEC("tracepoint/syscalls/sys_enter_close")
int sys_enter_close(void *ctx) { return touch(); }

/* Socket-level tracepoints (sock_sendmsg / sock_recvmsg, Linux 6.4+): they
 * fire for socket I/O only, whatever the syscall. BTF-typed and raw. */
SEC("tp_btf/sock_send_length")
int btf_sock_send(void *ctx) { return touch(); }
SEC("tp_btf/sock_recv_length")
int btf_sock_recv(void *ctx) { return touch(); }
SEC("raw_tp/sock_send_length")
int raw_sock_send(void *ctx) { return touch(); }
SEC("raw_tp/sock_recv_length")
int raw_sock_recv(void *ctx) { return touch(); }
