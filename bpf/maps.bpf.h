/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Maps, load-time filters and the kernel-private connection state. */
#ifndef HTTPTRACED_MAPS_BPF_H
#define HTTPTRACED_MAPS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "httptraced_abi.h"

/* Load-time configuration, written by the daemon through skel->rodata. */
const volatile __u32 targ_self_tgid = 0;
const volatile __u32 targ_npids = 0;
const volatile __u32 targ_pids[HT_MAX_FILTER] = {};
const volatile __u32 targ_nports = 0;
const volatile __u16 targ_ports[HT_MAX_FILTER] = {};
const volatile __u32 targ_unix_sockets = 1; /* Unix domain stream sockets too */
const volatile __u32 targ_unix_by_name = 0; /* --unix_path: past the port filter */
const volatile __u32 targ_tls = 0; /* the libssl uprobes are attached (tls.bpf.h) */
const volatile __u32 targ_max_capture = 65536; /* payload bytes per syscall */
const volatile __u64 targ_wakeup_bytes = 1 << 20; /* wake the reader at each multiple of this backlog */
/* Syscall number -> enum ht_syscall (0: not a payload syscall), filled by the daemon. */
const volatile __u8 targ_sys_kind[HT_MAX_SYSCALL_NR] = {};

/* Connections userspace asked to stop tracing, not yet seen by the kernel. */
volatile __u64 disabled_pending = 0;
/* Entries in `skips`: while 0, payload events cost no lookup there. */
volatile __u64 skips_pending = 0;
/*
 * Set by the daemon at shutdown: every program returns at once, so tracing
 * stops at one instant for all syscalls instead of hook by hook as links are
 * destroyed (which left one-sided exchanges behind).
 */
volatile __u32 tracing_stopped = 0;
/*
 * Threads inside a libssl call (tls_calls entries this side inserted and has
 * not deleted): while 0, a syscall on an undecided connection costs no
 * lookup there. A thread killed inside a call leaves it higher, which costs
 * only those lookups.
 */
volatile __u64 tls_calls_active = 0;
/* Some process made a libssl call with no socket to tie it to (memory BIOs,
 * tls.bpf.h): from then on its reads of TLS records are noted (tls_last_read). */
volatile __u64 membio_seen = 0;
/* The kernel's socket_file_ops, learned from the first traced socket seen (sock.bpf.h). */
volatile __u64 sock_fops = 0;
/*
 * Where a task's saved user registers are, from the base of its kernel stack:
 * the same for every task of a kernel (THREAD_SIZE and the padding above them
 * are build constants). Learned from bpf_task_pt_regs() the first time, for the
 * payload program that reads kernel memory with plain loads (conn__args).
 */
volatile __u64 pt_regs_offset = 0;

enum conn_proto {
	PROTO_UNKNOWN = 0,  /* not decided yet */
	PROTO_HTTP = 1,     /* looks like HTTP/1.x: payload is emitted */
	PROTO_IGNORED = 2,  /* not HTTP, filtered out, or disabled: costs one lookup */
	PROTO_ALIAS = 3,    /* a standard fd on the same socket as another: see alias_fd */
};

#define EMITTED_OPEN 0x1
#define EMITTED_DIR(d) (0x2 << (d))

/* A syscall's arguments, read back from the saved user registers at exit. */
struct syscall_args {
	__u64 buf;   /* buffer, iovec array, msghdr or mmsghdr array */
	__u64 count; /* buffer size, iovec count or mmsghdr count */
	__s32 fd;
	__u8 sys;    /* enum ht_syscall */
	__u8 dir;    /* enum ht_direction */
	__u16 pad;
	__u64 flags; /* recvfrom/recvmsg/recvmmsg: their flags argument */
};

/* State of one payload emission, shared with the bpf_loop() step callback. */
struct emit_ctx {
	struct ht_conn_id conn;
	__u64 ts;
	__u64 pos;     /* stream position of the chunk being staged */
	__u64 iov;     /* user pointer to the iovec array, or 0 */
	__u64 iovcnt;
	__u64 iov_idx;
	__u64 base;    /* user pointer to the rest of the current piece */
	__u64 left;    /* bytes left in the current piece */
	__u64 budget;  /* bytes that may still be captured */
	__u64 captured;
	__u64 skip_bytes; /* payload bytes to pass over before copying again */
	/* Between the head and the tail of an iovec syscall (emit__middle_step): */
	__u64 walked;  /* bytes of the syscall walked, captured or passed over */
	__u64 until;   /* where the walk stops (the tail's start) */
	__u64 gap;     /* bytes passed over since the last one staged */
	__u32 tid;
	__u32 fill;    /* bytes staged in buf */
	__u16 flags;   /* HT_DATA_F_* for the next event */
	__u8 dir;
	__u8 sys;
	__u8 wake;     /* wake the reader with the next event */
	__u8 small;    /* the current iovec is a small piece: captured */
	__u8 pad[2];
};

/*
 * Per-CPU staging area: a chunk is assembled in buf, then copied into the ring
 * with its exact size. The emission state lives here rather than on the stack
 * so that the verifier sees it as plain map memory and the bpf_loop() callback
 * converges quickly.
 */
/* State of one recvmmsg/sendmmsg walk, shared with its bpf_loop() callback. */
struct mmsg_ctx {
	__u64 vec;   /* user pointer to the mmsghdr array */
	__u32 tgid;
	__s32 fd;
	__u8 dir;
	__u8 sys;
	__u8 lost;   /* a header could not be read: positions are no longer known */
	__u8 discarded; /* MSG_TRUNC on TCP: the bytes were consumed, not copied */
	__u8 admitted;  /* the first message's bytes go out (conn__admit) */
	__u16 first_flags; /* and its event flags */
	__u32 tid;   /* thread that made the syscall */
};

/* This CPU's view of the ring's backlog, for ringbuf__output_sampled. */
struct rb_check {
	__u64 unchecked; /* bytes output since the backlog was last read */
	__u64 bucket;    /* backlog / targ_wakeup_bytes when last read */
};

struct scratch {
	struct emit_ctx ctx;
	struct mmsg_ctx mmsg;
	struct rb_check rb;
	struct ht_data_event ev;
	__u8 buf[2 * HT_CHUNK_MAX]; /* twice the chunk: lets the verifier bound offsets */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536); /* resized at load time */
	__type(key, struct ht_conn_key);
	__type(value, struct ht_conn_state);
} conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct ht_conn_id);
	__type(value, __u8);
} disabled SEC(".maps");

/*
 * Not LRU: an entry evicted behind the counter's back would leave
 * skips_pending above zero for good. When it is full, userspace's insert
 * fails and that body is copied as before.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct ht_skip_key);
	__type(value, struct ht_skip_range);
} skips SEC(".maps");

/* What a thread inside SSL_read/SSL_write (or a handshake) called it with. */
enum tls_op {
	TLS_OP_HANDSHAKE = 1, /* SSL_do_handshake, SSL_connect, SSL_accept: no payload */
	TLS_OP_READ,          /* SSL_read(ssl, buf, num): returns the bytes read */
	TLS_OP_WRITE,         /* SSL_write(ssl, buf, num): returns the bytes written */
	TLS_OP_READ_EX,       /* SSL_read_ex(ssl, buf, num, &readbytes): returns 1 */
	TLS_OP_WRITE_EX,      /* SSL_write_ex(ssl, buf, num, &written): returns 1 */
};

struct tls_call {
	__u64 ssl;      /* the SSL object */
	__u64 buf;      /* user buffer of the plaintext */
	__u64 done_ptr; /* _ex calls: where the byte count is stored */
	__s32 fd;       /* socket of a syscall made during the call; -1 if none yet */
	__u8 op;        /* enum tls_op */
	__u8 pad[3];
};

/* Per thread (pid_tgid): the libssl call it is in. LRU: a call whose return
 * was never seen (the thread was killed inside it) ages out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct tls_call);
} tls_calls SEC(".maps");

struct tls_fd_key {
	__u32 tgid;
	__u32 pad;
	__u64 ssl;
};

/*
 * The socket each SSL object was last seen using: an SSL_read served from
 * libssl's own buffer makes no syscall to learn it from. Learned again at
 * every handshake, so an SSL object's address reused for another connection
 * is not attributed to the old socket.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tls_fd_key);
	__type(value, __s32);
} tls_fds SEC(".maps");

/*
 * Processes that drive libssl through memory BIOs (Node.js): an SSL_read or
 * SSL_write made no syscall and its SSL object had no known socket. Their
 * socket I/O is done by other code, around the libssl calls.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32); /* tgid */
	__type(value, __u8);
} membio_tgids SEC(".maps");

/* A thread's last read of what looks like a TLS record, in such a process. */
struct tls_read {
	__s32 fd;
	__u32 pad;
	__u64 ts_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct tls_read);
} tls_last_read SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1); /* set to the number of possible CPUs at load time */
	__type(key, __u32);
	__type(value, struct scratch);
} scratch_space SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HT_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20); /* resized at load time */
} events SEC(".maps");

static __always_inline void counters__add(__u32 idx, __u64 n)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &idx);

	if (c)
		*c += n;
}

static __always_inline struct scratch *scratch__get(void)
{
	__u32 cpu = bpf_get_smp_processor_id();

	return bpf_map_lookup_elem(&scratch_space, &cpu);
}

/*
 * Ring-buffer output that counts what it loses. Wake-ups are batched: the
 * reader polls on a short timer and is woken only when this event takes the
 * backlog across a multiple of targ_wakeup_bytes, not on every event (each
 * wake-up is an IPI, and a storm of them cost the traced processes more than
 * the copy). Every multiple, not only the first: producers on two CPUs can read
 * the same backlog and step over a boundary together without either seeing the
 * crossing; the next boundary wakes the reader then, where a single threshold
 * left it asleep for its whole poll timeout while the ring filled.
 */
static __always_inline long ringbuf__output_flags(void *data, __u64 size, __u64 flags)
{
	long err = bpf_ringbuf_output(&events, data, size, flags);

	if (err) {
		counters__add(HT_CNT_RB_DROPS, 1);
		counters__add(HT_CNT_RB_DROP_BYTES, size);
	}
	return err;
}

static __always_inline long ringbuf__output(void *data, __u64 size)
{
	__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	__u64 step = targ_wakeup_bytes ? targ_wakeup_bytes : 1;
	__u64 flags = avail / step != (avail + size) / step ? BPF_RB_FORCE_WAKEUP
							      : BPF_RB_NO_WAKEUP;

	return ringbuf__output_flags(data, size, flags);
}

/*
 * The same for payload events, the bulk of the traffic, without reading the
 * backlog for each one (a helper call, about 10% of a small event's cost):
 * each CPU reads it once per 1/16 of targ_wakeup_bytes it has output, and
 * wakes the reader when the backlog is in a higher multiple of
 * targ_wakeup_bytes than at its last reading. A crossing is then seen at most
 * that much later by the CPU that keeps producing, and still by every CPU
 * that produces across it; the reader's poll timeout bounds the rest.
 */
static __always_inline long ringbuf__output_sampled(struct rb_check *r, void *data, __u64 size,
						    bool wake)
{
	__u64 step = targ_wakeup_bytes ? targ_wakeup_bytes : 1;
	__u64 flags = wake ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	__u64 bucket;

	r->unchecked += size;
	if (r->unchecked >= (step >> 4)) {
		r->unchecked = 0;
		bucket = (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) + size) / step;
		if (bucket > r->bucket)
			flags = BPF_RB_FORCE_WAKEUP;
		r->bucket = bucket;
	}
	return ringbuf__output_flags(data, size, flags);
}

#endif /* HTTPTRACED_MAPS_BPF_H */
