/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Protocol inference: does a stream start like HTTP/1.x? The first bytes must
 * be a request method followed by a space, or "HTTP/1.". Connections that do
 * not are marked IGNORED and stop costing ring-buffer bandwidth.
 */
#ifndef HTTPTRACED_INFER_BPF_H
#define HTTPTRACED_INFER_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "maps.bpf.h"

enum infer_result {
	INFER_NO = 0,       /* cannot be the start of an HTTP/1.x message */
	INFER_POSSIBLE = 1, /* a prefix of one: wait for more bytes */
	INFER_MATCH = 2,    /* an HTTP/1.x request or status line starts here */
};

struct infer_token {
	char s[HT_PREFIX_LEN];
	__u64 len;
};

/* Methods from RFC 9110 and the registries llhttp knows; longer ones cut to 8 bytes. */
static const struct infer_token infer_tokens[] = {
	{"GET ", 4},      {"POST ", 5},     {"PUT ", 4},      {"HEAD ", 5},
	{"DELETE ", 7},   {"OPTIONS ", 8},  {"PATCH ", 6},    {"CONNECT ", 8},
	{"TRACE ", 6},    {"HTTP/1.", 7},   {"PROPFIND", 8},  {"PROPPATC", 8},
	{"MKCOL ", 6},    {"COPY ", 5},     {"MOVE ", 5},     {"LOCK ", 5},
	{"UNLOCK ", 7},   {"SEARCH ", 7},   {"PURGE ", 6},    {"REPORT ", 7},
	{"MKCALEND", 8},  {"MKACTIVI", 8},  {"CHECKOUT", 8},  {"MERGE ", 6},
	{"M-SEARCH", 8},  {"NOTIFY ", 7},   {"SUBSCRIB", 8},  {"UNSUBSCR", 8},
	{"LINK ", 5},     {"UNLINK ", 7},   {"SOURCE ", 7},   {"QUERY ", 6},
	{"ACL ", 4},      {"BIND ", 5},     {"REBIND ", 7},   {"UNBIND ", 7},
};

#define INFER_NTOKENS (sizeof(infer_tokens) / sizeof(infer_tokens[0]))

static __always_inline __u64 infer__mask(__u64 len)
{
	return len >= 8 ? ~0ULL : ((1ULL << (len * 8)) - 1);
}

/* Classifies the first `len` (<= 8) bytes of a stream, packed little-endian in p. */
static __always_inline enum infer_result infer__classify(__u64 p, __u32 len)
{
	enum infer_result res = INFER_NO;

	if (len == 0)
		return INFER_POSSIBLE;
	if (len > HT_PREFIX_LEN)
		len = HT_PREFIX_LEN;
	for (int i = 0; i < INFER_NTOKENS; i++) {
		__u64 t, tlen = infer_tokens[i].len;
		__u64 m;

		__builtin_memcpy(&t, infer_tokens[i].s, sizeof(t));
		if (len >= tlen) {
			m = infer__mask(tlen);
			if ((p & m) == (t & m))
				return INFER_MATCH;
		} else {
			m = infer__mask(len);
			if ((p & m) == (t & m))
				res = INFER_POSSIBLE;
		}
	}
	return res;
}

#endif /* HTTPTRACED_INFER_BPF_H */
