// Loads bench/probe_cost/probes.bpf.o, attaches the programs named on the
// command line, prints "attached" and holds them until SIGTERM or SIGINT.
//
//   load PROBES_BPF_O PROGRAM...
#include <bpf/libbpf.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s PROBES_BPF_O PROGRAM...\n", argv[0]);
    return 2;
  }
  struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
  if (obj == NULL) {
    fprintf(stderr, "load: cannot open %s\n", argv[1]);
    return 1;
  }
  struct bpf_program *prog;
  int wanted = 0;
  bpf_object__for_each_program(prog, obj) {
    bool want = false;
    for (int i = 2; i < argc; i++) want = want || strcmp(argv[i], bpf_program__name(prog)) == 0;
    bpf_program__set_autoload(prog, want);
    wanted += want;
  }
  if (wanted != argc - 2) {
    fprintf(stderr, "load: a named program is not in %s\n", argv[1]);
    return 2;
  }
  if (bpf_object__load(obj) != 0) {
    fprintf(stderr, "load: the kernel refused the programs\n");
    return 1;
  }
  bpf_object__for_each_program(prog, obj) {
    if (bpf_program__autoload(prog) && bpf_program__attach(prog) == NULL) {
      fprintf(stderr, "load: cannot attach %s\n", bpf_program__name(prog));
      return 1;
    }
  }
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  printf("attached\n");
  fflush(stdout);
  while (!stop) pause();
  bpf_object__close(obj);
  return 0;
}
