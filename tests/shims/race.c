/* LD_PRELOAD interposers that hold `lsbaws serve` inside a race window, so that
 * a test makes a rare interleaving happen every time instead of 1 in 300 runs.
 * Each acts only when LSBAWS_RACE names it, only in a program named lsbaws, and
 * only in the process that loaded it (the server, never its forked children).
 * Built by the tests with `cc -shared` (tests/serve_faults.rs). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t server;
static const char *race = "";

__attribute__((constructor)) static void init(void) {
    const char *r = getenv("LSBAWS_RACE");
    server = getpid();
    if (r && strcmp(program_invocation_short_name, "lsbaws") == 0)
        race = r;
}

static int active(const char *name) {
    return getpid() == server && strcmp(race, name) == 0;
}

/* "sigchld-installed": once a SIGCHLD handler is installed, wait until a child
 * (one inherited across exec) has exited, so that the handler sees that exit
 * before anything the server does next. */
int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    static int (*real)(int, const struct sigaction *, struct sigaction *);
    static int done;
    if (!real)
        real = (int (*)(int, const struct sigaction *, struct sigaction *))dlsym(RTLD_NEXT, "sigaction");
    int rc = real(sig, act, old);
    if (rc == 0 && sig == SIGCHLD && act && act->sa_handler != SIG_DFL &&
        act->sa_handler != SIG_IGN && !done && active("sigchld-installed")) {
        int saved = errno;
        siginfo_t info;
        done = 1;
        /* WNOWAIT: leave the reaping to the handler. ECHILD at once if none. */
        while (waitid(P_ALL, 0, &info, WEXITED | WNOWAIT) == -1 && errno == EINTR) {
        }
        errno = saved;
    }
    return rc;
}
