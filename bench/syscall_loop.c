// Micro-benchmark for the cost httptraced adds to syscalls that are not socket
// I/O: runs one kind of syscall in a tight loop and prints nanoseconds per call.
//
//   syscall_loop getppid SECONDS
//   syscall_loop read    SECONDS FILE   (read() 64 bytes at a time, rewinding at EOF)
//   syscall_loop write   SECONDS        (write() 64 bytes to /dev/null)
//   syscall_loop unix    SECONDS        (write() 64 bytes into a unix socketpair, read() them
//                                        back: one call counted per write or read)
//   syscall_loop close   SECONDS        (dup() of /dev/null's fd, close() of the copy: one
//                                        call counted per dup or close)
//
// Output, one line: "<mode> calls=<n> ns=<elapsed> ns_per_call=<x>".
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s getppid|read|write|unix|close SECONDS [FILE]\n", argv[0]);
    return 2;
  }
  const char *mode = argv[1];
  const long long budget = (long long)(atof(argv[2]) * 1e9);
  int fd = -1;
  int pair[2] = {-1, -1};
  if (strcmp(mode, "unix") == 0) {
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0) {
      perror("socketpair");
      return 1;
    }
    fd = pair[0];
  } else if (strcmp(mode, "read") == 0) {
    if (argc < 4) {
      fprintf(stderr, "read needs a FILE\n");
      return 2;
    }
    fd = open(argv[3], O_RDONLY);
  } else if (strcmp(mode, "write") == 0 || strcmp(mode, "close") == 0) {
    fd = open("/dev/null", O_WRONLY);
  } else if (strcmp(mode, "getppid") != 0) {
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
  }
  if (strcmp(mode, "getppid") != 0 && fd < 0) {
    perror("open");
    return 1;
  }
  char buf[64];
  memset(buf, 'x', sizeof(buf));
  const int batch = 1000;  // the clock is read once per batch
  long long calls = 0;
  const long long start = now_ns();
  long long elapsed = 0;
  volatile long sink = 0;
  do {
    for (int i = 0; i < batch; i++) {
      if (mode[0] == 'g') {
        sink += syscall(SYS_getppid);  // not cached by libc
      } else if (mode[0] == 'u') {
        if (write(pair[0], buf, sizeof(buf)) != (ssize_t)sizeof(buf) ||
            read(pair[1], buf, sizeof(buf)) != (ssize_t)sizeof(buf)) {
          perror("unix");
          return 1;
        }
        i++;  // two calls
      } else if (mode[0] == 'c') {
        int copy = dup(fd);
        if (copy < 0 || close(copy) != 0) {
          perror("close");
          return 1;
        }
        i++;  // two calls
      } else if (mode[0] == 'r') {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n <= 0) {
          lseek(fd, 0, SEEK_SET);  // 1 in 1024 calls: a file of 64 KiB
          if (n < 0) {
            perror("read");
            return 1;
          }
        }
      } else {
        if (write(fd, buf, sizeof(buf)) < 0) {
          perror("write");
          return 1;
        }
      }
    }
    calls += batch;
    elapsed = now_ns() - start;
  } while (elapsed < budget);
  printf("%s calls=%lld ns=%lld ns_per_call=%.2f\n", mode, calls, elapsed,
         (double)elapsed / (double)calls);
  return 0;
}
