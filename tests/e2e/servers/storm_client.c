/*
 * A fast client for the load tests: N short-lived HTTP/1.1 connections (one
 * request each, "Connection: close"), spread over T threads.
 *
 *   storm_client HOST PORT N THREADS PREFIX
 *
 * Connection i asks for PREFIX<i> and checks that the answer ends with
 * "path=PREFIX<i>\n" (the echo nginx of the e2e tests). Prints "ok=<n> bad=<n>"
 * and exits 0 only if every exchange succeeded.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct sockaddr_in addr;
static long total;
static const char *prefix;
static atomic_long next_index;
static atomic_long ok_count;
static atomic_long bad_count;

static int one(long i)
{
	char req[512], want[256], buf[4096];
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	size_t got = 0;
	int n, wn;

	if (fd < 0)
		return 0;
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
		close(fd);
		return 0;
	}
	n = snprintf(req, sizeof(req),
		     "GET %s%ld HTTP/1.1\r\nHost: storm\r\nConnection: close\r\n\r\n", prefix, i);
	if (write(fd, req, n) != n) {
		close(fd);
		return 0;
	}
	for (;;) {
		ssize_t r = read(fd, buf + got, sizeof(buf) - 1 - got);

		if (r <= 0)
			break;
		got += r;
		if (got == sizeof(buf) - 1)
			break;
	}
	close(fd);
	buf[got] = 0;
	wn = snprintf(want, sizeof(want), "path=%s%ld\n", prefix, i);
	return got >= (size_t)wn && memcmp(buf + got - wn, want, wn) == 0 &&
	       strncmp(buf, "HTTP/1.1 200 ", 13) == 0;
}

static void *worker(void *arg)
{
	(void)arg;
	for (;;) {
		long i = atomic_fetch_add(&next_index, 1);

		if (i >= total)
			return NULL;
		if (one(i))
			atomic_fetch_add(&ok_count, 1);
		else
			atomic_fetch_add(&bad_count, 1);
	}
}

int main(int argc, char **argv)
{
	pthread_t threads[256];
	int nthreads;

	if (argc != 6) {
		fprintf(stderr, "usage: %s HOST PORT N THREADS PREFIX\n", argv[0]);
		return 2;
	}
	addr.sin_family = AF_INET;
	addr.sin_port = htons((unsigned short)atoi(argv[2]));
	if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1)
		return 2;
	total = atol(argv[3]);
	nthreads = atoi(argv[4]);
	if (nthreads < 1 || nthreads > 256)
		return 2;
	prefix = argv[5];
	for (int t = 0; t < nthreads; t++)
		pthread_create(&threads[t], NULL, worker, NULL);
	for (int t = 0; t < nthreads; t++)
		pthread_join(threads[t], NULL);
	printf("ok=%ld bad=%ld\n", atomic_load(&ok_count), atomic_load(&bad_count));
	return atomic_load(&bad_count) == 0 ? 0 : 1;
}
