/* The fork-per-connection floor that bench/serve.sh measures `lsbaws serve`
 * against: accept, fork, read the request, write one canned 200, _exit. The
 * parent reaps in a SIGCHLD handler with a waitpid(-1, WNOHANG) loop
 * (webserver3g in C). No parsing, no logging, no timeouts: nothing a forking
 * server could leave out. Listens on 127.0.0.1 only.
 *
 * Build: gcc -O2 -o forkserver forkserver.c     Run: ./forkserver PORT
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static const char RESPONSE[] =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 14\r\n"
    "Connection: close\r\n"
    "\r\n"
    "Hello, World!\n";

static void on_chld(int sig) {
    (void)sig;
    int saved = errno;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    errno = saved;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_chld;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGCHLD, &sa, NULL) == -1) {
        perror("sigaction");
        return 1;
    }

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)atoi(argv[1]));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) == -1 || listen(lfd, 1024) == -1) {
        perror("bind/listen");
        return 1;
    }

    for (;;) {
        int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (cfd == -1) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                usleep(10000);
            continue; /* EINTR, ECONNABORTED, ...: keep serving */
        }
        pid_t pid = fork();
        if (pid == 0) {
            close(lfd);
            char buf[8192];
            ssize_t n = read(cfd, buf, sizeof buf);
            if (n > 0) {
                ssize_t w = write(cfd, RESPONSE, sizeof RESPONSE - 1);
                (void)w;
            }
            close(cfd);
            _exit(0);
        }
        if (pid == -1)
            usleep(10000);
        close(cfd);
    }
}
