/*
 * crash.c - the mark a dying actor leaves for its last words.
 * Built into the cffi extension (skyrl_fdlog._fdlog) only.
 *
 * When a redirected process dies of a fatal signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE,
 * SIGABRT), the handler sends one byte 'D' with an fd attached into the err channel, the
 * way flush() sends its request ('\0'): the helper learns that this pid is ending out of
 * order, and once it is gone prints its last lines to the original stderr (helper.c, "Last
 * words").  An orderly end (restore, exit, Ray's kill) sends nothing, so it prints nothing.
 * The handler then gives the signal to whoever had it before (Python's faulthandler in Ray
 * workers), whose report still comes, into the log.  An actor whose __init__ raised
 * (skyrl_fdlog/_last_words.py) sends 'X' the same way: Ray ends such a process in order.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fdlog.h"

static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
enum { FATAL_COUNT = sizeof fatal_signals / sizeof fatal_signals[0] };
static struct sigaction previous[FATAL_COUNT];
static int installed;
static volatile sig_atomic_t mark_fd = -1; /* a copy of the err channel's writing end */

static void send_mark(int fd, char *cause)
{
    char control[CMSG_SPACE(sizeof(int))];
    memset(control, 0, sizeof control);
    struct iovec iov = {.iov_base = cause, .iov_len = 1};
    struct msghdr message = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                             .msg_controllen = sizeof control};
    struct cmsghdr *c = CMSG_FIRSTHDR(&message);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    (void)!sendmsg(fd, &message, MSG_DONTWAIT | MSG_NOSIGNAL); /* sendmsg: async-signal-safe */
}

static void on_fatal_signal(int signal_number, siginfo_t *info, void *context)
{
    (void)context;
    int saved_errno = errno;
    int fd = mark_fd;
    if (fd >= 0)
        send_mark(fd, "D");
    for (int i = 0; i < FATAL_COUNT; i++)
        if (fatal_signals[i] == signal_number)
            sigaction(signal_number, &previous[i], NULL);
    /* A fault repeats when the handler returns, now reaching the previous handler; a signal
     * that was sent (abort, kill) is sent again, delivered once this handler returns. */
    if (info == NULL || info->si_code <= 0)
        raise(signal_number);
    errno = saved_errno;
}

int fdl_mark_fatal_signals(int err_channel)
{
    int copy = err_channel >= 0 ? fcntl(err_channel, F_DUPFD_CLOEXEC, 3) : -1;
    if (err_channel >= 0 && copy < 0)
        return -errno;
    int old = mark_fd;
    mark_fd = copy;
    if (old >= 0)
        close(old);
    if (installed || copy < 0) /* installed once: a second would save our own handler */
        return 0;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_fatal_signal;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    for (int i = 0; i < FATAL_COUNT; i++)
        if (sigaction(fatal_signals[i], &action, &previous[i]) != 0)
            return -errno;
    installed = 1;
    return 0;
}

int fdl_mark_exception(void)
{
    int fd = mark_fd;
    if (fd >= 0)
        send_mark(fd, "X");
    return 0;
}
