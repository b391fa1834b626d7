// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The second half of the close-on-exec test (test_load.py): exec()ed by a
 * process whose HTTP client socket sat on fd N with close-on-exec, so the
 * exec closed it with no close() for the tracer to see. Opens a file that
 * reads like an HTTP response, checks that it got fd N, reads it, then makes
 * one more exchange ("GET /p/after-exec"), prints "ok <pid>" and stays
 * until its stdin closes (so that the daemon can still read its /proc/<pid>/exe).
 *
 * Linked statically: a dynamic loader would open and read libc at fd N
 * first, before this program's own read.
 *
 * usage: exec_reader PORT FILE N
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int fail(const char *what)
{
	perror(what);
	return 1;
}

int main(int argc, char **argv)
{
	static const char req[] = "GET /p/after-exec HTTP/1.1\r\nHost: u\r\n\r\n";
	static const char want[] = "path=/p/after-exec\n";
	char buf[4096];
	struct sockaddr_in addr = {.sin_family = AF_INET};
	size_t got = 0;
	ssize_t n;
	int fd, f, s;

	if (argc != 4)
		return fprintf(stderr, "usage: exec_reader PORT FILE N\n"), 2;
	fd = atoi(argv[3]);
	f = open(argv[2], O_RDONLY);
	if (f != fd)
		return fprintf(stderr, "the file got fd %d, not %d\n", f, fd), 1;
	n = read(f, buf, sizeof(buf));
	if (n < 11 || memcmp(buf + n - 11, "from-a-file", 11) != 0)
		return fprintf(stderr, "unexpected file content\n"), 1;
	close(f);

	s = socket(AF_INET, SOCK_STREAM, 0);
	addr.sin_port = htons((unsigned short)atoi(argv[1]));
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (s < 0 || connect(s, (struct sockaddr *)&addr, sizeof(addr)) != 0)
		return fail("connect");
	if (write(s, req, sizeof(req) - 1) != (ssize_t)(sizeof(req) - 1))
		return fail("write");
	while (got < sizeof(want) - 1 || memcmp(buf + got - (sizeof(want) - 1), want,
						 sizeof(want) - 1) != 0) {
		if (got == sizeof(buf))
			return fprintf(stderr, "response too long\n"), 1;
		n = read(s, buf + got, sizeof(buf) - got);
		if (n <= 0)
			return fail("read");
		got += (size_t)n;
	}
	close(s);
	printf("ok %d\n", (int)getpid());
	fflush(stdout);
	while (read(0, buf, sizeof(buf)) > 0)
		;
	return 0;
}
