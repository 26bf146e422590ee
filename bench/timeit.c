/* The benchmarks' timer (bench_timeit in lib.sh builds it). Runs argv[1..]
 * once with stdout/stderr on /dev/null; prints its wall time and the CPU time
 * (user + system) of it and every descendant it reaped, in microseconds:
 * "wall cpu". posix_spawn, so no shell fork is counted (a shell's own fork
 * would add about a millisecond and hide what is measured). Exits 1 when the
 * command did not exit 0. */
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
extern char **environ;
int main(int argc, char **argv) {
  posix_spawn_file_actions_t fa;
  struct timespec a, b;
  struct rusage ru;
  pid_t pid;
  int status;
  if (argc < 2) return 2;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  clock_gettime(CLOCK_MONOTONIC, &a);
  if (posix_spawnp(&pid, argv[1], &fa, 0, argv + 1, environ) != 0) { perror(argv[1]); return 2; }
  wait4(pid, &status, 0, &ru);
  clock_gettime(CLOCK_MONOTONIC, &b);
  long cpu = ru.ru_utime.tv_sec * 1000000L + ru.ru_utime.tv_usec + ru.ru_stime.tv_sec * 1000000L + ru.ru_stime.tv_usec;
  printf("%ld %ld\n", (long)((b.tv_sec - a.tv_sec) * 1000000L + (b.tv_nsec - a.tv_nsec) / 1000), cpu);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
