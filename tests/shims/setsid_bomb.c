/* A fork bomb that a round-by-round clean-up cannot catch (attack 3, F7):
 * every process ignores SIGTERM and forks as fast as RLIMIT_NPROC lets it;
 * each child leaves its parent's session and group (setsid), and a third of
 * the parents exit, so their children are re-parented while they fork.
 * argv: DEADLINE (Unix seconds: everything ends by then, whatever happens)
 * MARKER (only so that a test can find these processes by their arguments).
 * The first process exits after 0.3 s, as a command that leaked it would.
 * Its output goes to /dev/null: no bomb process holds a pipe of the test's. */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        return 2;
    }
    time_t deadline = (time_t)atol(argv[1]);
    int null = open("/dev/null", O_RDWR);
    if (null < 0) {
        return 2;
    }
    for (int fd = 0; fd < 3; fd++) {
        dup2(null, fd);
    }
    signal(SIGTERM, SIG_IGN);
    if (fork() != 0) {
        usleep(300000);
        return 0;
    }
    while (time(NULL) < deadline) {
        pid_t pid = fork();
        if (pid < 0) {
            usleep(1000);
            continue;
        }
        if (pid == 0) {
            setsid();
            continue;
        }
        if (getpid() % 3 == 0) {
            _exit(0);
        }
        usleep(2000);
    }
    _exit(0);
}
