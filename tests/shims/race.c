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
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
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

/* Sleeps `ms` milliseconds; signal handlers run meanwhile. */
static void hold(long ms) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR) {
    }
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

/* "sweep-pause": logs every SIGTERM/SIGKILL the server sends and its result,
 * and after the first one pauses 3 s, long enough for another child to exit
 * on its own before the server signals it. */
int kill(pid_t pid, int sig) {
    static int (*real)(pid_t, int);
    static int paused;
    if (!real)
        real = (int (*)(pid_t, int))dlsym(RTLD_NEXT, "kill");
    int rc = real(pid, sig);
    int saved = errno;
    if (pid > 0 && (sig == SIGTERM || sig == SIGKILL) && active("sweep-pause")) {
        char line[96];
        int n = snprintf(line, sizeof line, "race: kill(%d, %d) = %s\n", (int)pid, sig,
                         rc == 0 ? "0" : saved == ESRCH ? "ESRCH" : "error");
        if (n > 0 && write(2, line, (size_t)n) < 0) {
        }
        if (!paused) {
            paused = 1;
            hold(3000);
        }
    }
    errno = saved;
    return rc;
}

/* "term-before-accept": the first accept4 gets a SIGTERM just before the call,
 * after the server's loop checked its stop flag: the handler runs, then the
 * (blocking, with --on-eintr fail) accept starts. */
int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags) {
    static int (*real)(int, struct sockaddr *, socklen_t *, int);
    static int done;
    if (!real)
        real = (int (*)(int, struct sockaddr *, socklen_t *, int))dlsym(RTLD_NEXT, "accept4");
    if (!done && active("term-before-accept")) {
        done = 1;
        raise(SIGTERM);
    }
    /* "accept-slow": each accept waits 20 ms first, so a burst queues in the
     * backlog while each child has time to exit before the next fork. */
    if (active("accept-slow"))
        hold(20);
    return real(fd, addr, len, flags);
}
