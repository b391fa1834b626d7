/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The ABI between the BPF programs and the daemon: plain fixed-width structs
 * that cross the ring buffer and the maps. Only __u8..__u64, explicit padding,
 * a size assertion per struct. Userspace memcpy()s samples out after checking
 * their size; C++ helpers for this ABI live in userspace/bpf/, not here.
 */
#ifndef HTTPTRACED_ABI_H
#define HTTPTRACED_ABI_H

#ifdef __BPF__
/* vmlinux.h provides the __u* types. */
#else
#include <linux/types.h>
#endif

#define HT_ABI_VERSION 1

/* Payload bytes carried by one data event; larger syscalls are split. */
#define HT_CHUNK_MAX 16384
/* Upper bound on events emitted for one syscall (chunks and iovec pieces). */
#define HT_MAX_EVENTS_PER_SYSCALL 64
/* iovec entries walked per readv/writev/recvmsg/sendmsg; the rest is a gap. */
#define HT_MAX_IOV 128
/* Messages walked per recvmmsg/sendmmsg; the rest is a gap. */
#define HT_MAX_MMSG 8
/* Bytes the kernel accumulates to decide whether a connection speaks HTTP/1.x. */
#define HT_PREFIX_LEN 8
/*
 * Payload syscalls a connection may take to show an HTTP message start: a few
 * from its accept()/connect() (a client may send junk before a valid request),
 * more when it was found mid-stream (it may be in the middle of a body).
 */
#define HT_MAX_INFER_ATTEMPTS_FRESH 4
#define HT_MAX_INFER_ATTEMPTS_DISCOVERED 32
/* Syscall numbers covered by the number -> kind table (a power of two). */
#define HT_MAX_SYSCALL_NR 512
/* Entries in the --pid / --port filter arrays. */
#define HT_MAX_FILTER 16
/* Bytes of a Unix domain socket's name carried by an open event (sun_path). */
#define HT_UNIX_PATH_MAX 108

enum ht_event_type {
	HT_EV_CONN_OPEN = 1,  /* struct ht_conn_event */
	HT_EV_DATA = 2,       /* struct ht_data_event + payload */
	HT_EV_CONN_CLOSE = 3, /* struct ht_close_event */
	HT_EV_PROC_EXIT = 4,  /* struct ht_exit_event */
};

/* Direction as seen by the traced process. */
enum ht_direction {
	HT_DIR_INGRESS = 0, /* bytes the process received */
	HT_DIR_EGRESS = 1,  /* bytes the process sent */
};

enum ht_role {
	HT_ROLE_UNKNOWN = 0,
	HT_ROLE_CLIENT = 1, /* connect()ed socket */
	HT_ROLE_SERVER = 2, /* accept()ed socket */
};

/* How the kernel learned about a connection. */
enum ht_origin {
	HT_ORIGIN_ACCEPT = 1,
	HT_ORIGIN_CONNECT = 2,
	HT_ORIGIN_DISCOVERED = 3, /* first seen at a read/write: opened before us */
};

enum ht_syscall {
	HT_SYS_READ = 1,
	HT_SYS_WRITE,
	HT_SYS_READV,
	HT_SYS_WRITEV,
	HT_SYS_RECVFROM,
	HT_SYS_SENDTO,
	HT_SYS_RECVMSG,
	HT_SYS_SENDMSG,
	HT_SYS_RECVMMSG,
	HT_SYS_SENDMMSG,
	HT_SYS_SENDFILE,
	HT_SYS_SPLICE,
	HT_SYS_SSL_READ,  /* plaintext returned by SSL_read/SSL_read_ex (uprobe) */
	HT_SYS_SSL_WRITE, /* plaintext taken by SSL_write/SSL_write_ex (uprobe) */
};

/*
 * The payload syscalls whose bytes are taken on the socket tracepoints
 * (sock_send_length/sock_recv_length fire once inside each) when they are
 * used; the others (sendmmsg/recvmmsg: once per message; sendfile, splice:
 * bytes that never pass through user memory) stay on their exit tracepoints.
 * A bit per enum ht_syscall value.
 */
#define HT_SYS_ON_SOCK_TRACEPOINTS                                                     \
	((1u << HT_SYS_READ) | (1u << HT_SYS_WRITE) | (1u << HT_SYS_READV) |            \
	 (1u << HT_SYS_WRITEV) | (1u << HT_SYS_RECVFROM) | (1u << HT_SYS_SENDTO) |      \
	 (1u << HT_SYS_RECVMSG) | (1u << HT_SYS_SENDMSG))

enum ht_close_reason {
	HT_CLOSE_SYSCALL = 1,  /* close() on the fd */
	HT_CLOSE_NOT_HTTP = 2, /* the kernel decided the stream is not HTTP/1.x */
	HT_CLOSE_DISABLED = 3, /* userspace asked to stop tracing it */
};

/* Per-CPU counters in the `counters` map, summed and reported by the daemon. */
enum ht_counter {
	HT_CNT_RB_DROPS = 0,      /* events lost: ring buffer full */
	HT_CNT_RB_DROP_BYTES = 1, /* payload bytes in those events */
	HT_CNT_READ_FAULTS = 2,   /* payload bytes the kernel could not copy */
	HT_CNT_NOT_HTTP = 3,      /* connections the kernel decided are not HTTP */
	HT_CNT_CONNS_SEEN = 4,    /* connections entered into the map */
	HT_CNT_STALE = 5,         /* entries left by an exited process or a previous exec, replaced */
	HT_CNT_BODY_SKIPPED = 6,  /* payload bytes not copied: past what userspace keeps of a body */
	HT_CNT_TLS_NO_FD = 7,     /* SSL_read/SSL_write calls whose socket was not found (memory BIOs) */
	HT_CNT_MAX = 8,
};

/* Data event flags. */
#define HT_DATA_F_STREAM_START 0x1 /* first event emitted for this direction */

/* A connection: survives fd and pid reuse through gen (ktime at first sight). */
struct ht_conn_id {
	__u32 tgid;
	__s32 fd;
	__u64 gen;
};

/* The kernel's connection map (`conns`): key and value. Userspace only
 * looks entries up and deletes them (ConnController::Forget). */
struct ht_conn_key {
	__u32 tgid;
	__s32 fd;
};

struct ht_conn_state {
	__u64 gen;        /* ktime at first sight: identity across fd reuse */
	__u64 proc_start; /* group leader's start_time: identity across pid reuse */
	__u64 pos[2];     /* bytes transferred per direction (enum ht_direction) */
	__u8 proto;       /* kernel-private: inference state */
	__u8 role;        /* enum ht_role */
	__u8 origin;      /* enum ht_origin */
	__u8 emitted;     /* kernel-private: what was already sent */
	__u8 attempts;    /* kernel-private: inference attempts so far */
	__u8 prefix_len;  /* kernel-private: bytes in prefix */
	__u8 prefix_dir;  /* kernel-private: direction of the prefix */
	__u8 is_unix;     /* kernel-private: an AF_UNIX socket */
	__u64 prefix_end; /* kernel-private: stream position after the prefix */
	char prefix[HT_PREFIX_LEN];
	__u32 exec_id;    /* the process's exec count: identity across execve */
	__u32 big_bytes;  /* kernel-private: bytes of large syscalls since the last forced wake-up */
	__s32 alias_fd;   /* kernel-private: PROTO_ALIAS: the fd whose entry this one shares */
	/* The socket carries TLS: its positions and payload are the plaintext
	 * seen at libssl's SSL_read/SSL_write, its ciphertext syscalls ignored. */
	__u8 tls;
	__u8 pad2[3];
};

/*
 * Body bytes userspace will only count (`skips` map), per connection and
 * direction: a syscall whose bytes all lie in [from, until) is announced as
 * skipped, not copied. Userspace inserts; whoever deletes first (the kernel
 * once the stream is past `until`, or at close; userspace when it forgets
 * the connection) decrements `skips_pending`.
 */
struct ht_skip_key {
	struct ht_conn_id conn;
	__u32 dir; /* enum ht_direction */
	__u32 pad;
};

struct ht_skip_range {
	__u64 from;  /* stream position of the first byte not to copy */
	__u64 until; /* and of the first byte to copy again */
};

struct ht_event_header {
	__u16 type;    /* enum ht_event_type */
	__u16 version; /* HT_ABI_VERSION */
	__u32 tid;     /* thread that made the syscall */
	__u64 ts_ns;   /* CLOCK_MONOTONIC, at syscall exit */
	struct ht_conn_id conn;
};

struct ht_conn_event {
	struct ht_event_header hdr;
	__u16 family; /* AF_INET, AF_INET6 or AF_UNIX */
	__u8 role;    /* enum ht_role */
	__u8 origin;  /* enum ht_origin */
	__u16 local_port;  /* host byte order */
	__u16 remote_port; /* host byte order */
	__u8 local_addr[16];  /* network order; IPv4 in the first 4 bytes */
	__u8 remote_addr[16];
	char comm[16]; /* the process (thread group leader) name */
	/* Stream positions where this connection's events begin, per direction. */
	__u64 start_pos[2];
	/* The process's identity beyond its pid (ht_conn_state): what it was
	 * running when the connection was entered, for userspace's per-process
	 * caches. */
	__u64 proc_start;
	__u32 exec_id;
	/* AF_UNIX: the peer's process (SO_PEERCRED: the one that connected, as
	 * seen by the end that accepted; the one that listened, by the end that
	 * connected), in the initial pid namespace; 0 when unknown. */
	__u32 peer_pid;
	/*
	 * AF_UNIX: the names the two sockets carry (sun_path, an abstract name
	 * starting with its '\0'), length 0 when unnamed. The end that accept()ed
	 * carries its listener's name; the end that connect()ed usually none.
	 */
	__u8 local_path_len;
	__u8 remote_path_len;
	__u8 tls;     /* the payload is TLS plaintext, taken at libssl (ht_conn_state.tls) */
	__u8 pad[5];
	char local_path[HT_UNIX_PATH_MAX];
	char remote_path[HT_UNIX_PATH_MAX];
};

struct ht_data_event {
	struct ht_event_header hdr;
	__u64 pos;  /* offset of data[0] in this direction's byte stream */
	__u32 len;  /* payload bytes that follow this struct */
	__u32 skip; /* stream bytes after the payload that were not captured */
	__u8 dir;   /* enum ht_direction */
	__u8 syscall; /* enum ht_syscall */
	__u16 flags;  /* HT_DATA_F_* */
	__u32 pad;
	/* __u8 data[len] follows */
};

struct ht_close_event {
	struct ht_event_header hdr;
	__u64 end_pos[2]; /* final stream length per direction (ingress, egress) */
	__u32 reason;     /* enum ht_close_reason */
	__u32 pad;
};

/*
 * A process ended (its last thread exited): its fds closed with no close()
 * for the syscall hooks to see.
 */
struct ht_exit_event {
	struct ht_event_header hdr; /* conn: the process's tgid, fd -1, gen 0 */
	__u64 proc_start;           /* as in its connections' ht_conn_state */
};

#ifdef __cplusplus
static_assert(sizeof(struct ht_conn_key) == 8, "ht_conn_key ABI");
static_assert(sizeof(struct ht_conn_state) == 72, "ht_conn_state ABI");
static_assert(sizeof(struct ht_conn_id) == 16, "ht_conn_id ABI");
static_assert(sizeof(struct ht_skip_key) == 24, "ht_skip_key ABI");
static_assert(sizeof(struct ht_skip_range) == 16, "ht_skip_range ABI");
static_assert(sizeof(struct ht_event_header) == 32, "ht_event_header ABI");
static_assert(sizeof(struct ht_conn_event) == 344, "ht_conn_event ABI");
static_assert(sizeof(struct ht_data_event) == 56, "ht_data_event ABI");
static_assert(sizeof(struct ht_close_event) == 56, "ht_close_event ABI");
static_assert(sizeof(struct ht_exit_event) == 40, "ht_exit_event ABI");
#else
_Static_assert(sizeof(struct ht_conn_key) == 8, "ht_conn_key ABI");
_Static_assert(sizeof(struct ht_conn_state) == 72, "ht_conn_state ABI");
_Static_assert(sizeof(struct ht_conn_id) == 16, "ht_conn_id ABI");
_Static_assert(sizeof(struct ht_skip_key) == 24, "ht_skip_key ABI");
_Static_assert(sizeof(struct ht_skip_range) == 16, "ht_skip_range ABI");
_Static_assert(sizeof(struct ht_event_header) == 32, "ht_event_header ABI");
_Static_assert(sizeof(struct ht_conn_event) == 344, "ht_conn_event ABI");
_Static_assert(sizeof(struct ht_data_event) == 56, "ht_data_event ABI");
_Static_assert(sizeof(struct ht_close_event) == 56, "ht_close_event ABI");
_Static_assert(sizeof(struct ht_exit_event) == 40, "ht_exit_event ABI");
#endif

#endif /* HTTPTRACED_ABI_H */
