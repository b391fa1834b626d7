// Memory scenario client: opens N keep-alive connections to HOST:PORT, sends one
// GET on each and reads its response, then keeps them all open and idle until
// its standard input reaches end of file (or "close\n" arrives), then closes them.
//
//   idle_conns HOST PORT N PATH
//
// Prints "open=<n> ok=<responses> failed=<n>" once every connection has had its
// response, then "closed=<n>" at the end. Raises RLIMIT_NOFILE itself.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static int read_response(int fd) {
  // The responses are small (a static page); read until the body is complete.
  char buf[8192];
  size_t have = 0;
  for (;;) {
    ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
    if (n <= 0) return -1;
    have += (size_t)n;
    buf[have] = '\0';
    char *end = strstr(buf, "\r\n\r\n");
    if (end == NULL) {
      if (have >= sizeof(buf) - 1) return -1;
      continue;
    }
    const char *cl = strcasestr(buf, "\r\ncontent-length:");
    size_t body = cl ? (size_t)strtoul(cl + 17, NULL, 10) : 0;
    size_t header = (size_t)(end + 4 - buf);
    if (have >= header + body) return strncmp(buf, "HTTP/1.1 200", 12) == 0 ? 0 : -1;
    if (have >= sizeof(buf) - 1) return -1;
  }
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: %s HOST PORT N PATH\n", argv[0]);
    return 2;
  }
  const char *host = argv[1];
  const int port = atoi(argv[2]);
  const int n = atoi(argv[3]);
  const char *path = argv[4];

  struct rlimit rl = {.rlim_cur = (rlim_t)n + 64, .rlim_max = (rlim_t)n + 64};
  struct rlimit cur;
  getrlimit(RLIMIT_NOFILE, &cur);
  if (cur.rlim_max != RLIM_INFINITY && cur.rlim_max > rl.rlim_max) rl.rlim_max = cur.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
    perror("setrlimit(RLIMIT_NOFILE)");
    return 1;
  }
  int *fds = calloc((size_t)n, sizeof(int));
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, host, &addr.sin_addr);
  char req[512];
  int reqlen = snprintf(req, sizeof(req),
                        "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: idle_conns\r\n"
                        "Accept: */*\r\n\r\n",
                        path, host, port);
  int open_count = 0, ok = 0, failed = 0;
  for (int i = 0; i < n; i++) {
    fds[i] = socket(AF_INET, SOCK_STREAM, 0);
    if (fds[i] < 0) {
      perror("socket");
      break;
    }
    if (connect(fds[i], (struct sockaddr *)&addr, sizeof(addr)) != 0) {
      perror("connect");
      close(fds[i]);
      fds[i] = -1;
      break;
    }
    open_count++;
  }
  // One request per connection, in waves so that the server's accept queue and
  // our own buffers stay small.
  const int wave = 256;
  for (int base = 0; base < open_count; base += wave) {
    int end = base + wave < open_count ? base + wave : open_count;
    for (int i = base; i < end; i++) {
      if (write(fds[i], req, (size_t)reqlen) != reqlen) failed++;
    }
    for (int i = base; i < end; i++) {
      if (read_response(fds[i]) == 0)
        ok++;
      else
        failed++;
    }
  }
  printf("open=%d ok=%d failed=%d\n", open_count, ok, failed);
  fflush(stdout);
  char line[64];
  while (fgets(line, sizeof(line), stdin) != NULL) {
    if (strncmp(line, "close", 5) == 0) break;
  }
  int closed = 0;
  for (int i = 0; i < open_count; i++) {
    if (fds[i] >= 0 && close(fds[i]) == 0) closed++;
  }
  printf("closed=%d\n", closed);
  fflush(stdout);
  free(fds);
  return failed == 0 && open_count == n ? 0 : 1;
}
