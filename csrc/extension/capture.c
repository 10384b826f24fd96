/*
 * capture.c - the capture channels and putting them on fds 1 and 2.
 * Built into the cffi extension (skyrl_fdlog._fdlog) only.
 *
 * A channel is an AF_UNIX stream socket pair rather than a pipe: with
 * SO_PASSCRED on the reading end the kernel never merges bytes of two
 * writers into one read and tells the pid of each, so lines of an actor and
 * of its children can be assembled separately.  A pipe mixes them, so the
 * only pipes are the actor's own (fdl_pipe_open): one writer, known pid.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fdlog.h"
#include "internal.h"

/* Room for bursts while the helper is busy; the kernel caps it at wmem_max. */
#define CHANNEL_BUFFER_BYTES (4 * 1024 * 1024)
/* Room for the actor's Python output while its helper waits for a CPU: with 64 writers
 * on 2 cores, 256 KiB cost half the throughput, 512 KiB none (benchmarks/notes.md).  Pipe
 * buffers count against a per-user limit (pipe-user-pages-soft, 64 MiB by default) past
 * which the user's new pipes start at 8 KiB: 2 x 512 KiB leaves room for 64 actors of one
 * unprivileged user on a node. */
#define PIPE_BUFFER_BYTES (512 * 1024)

int fdl_channel_open(int *read_fd, int *write_fd)
{
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
        return -errno;
    int on = 1, size = CHANNEL_BUFFER_BYTES;
    if (setsockopt(pair[0], SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0 ||
        shutdown(pair[0], SHUT_WR) != 0 || shutdown(pair[1], SHUT_RD) != 0) {
        int error = errno;
        close(pair[0]);
        close(pair[1]);
        return -error;
    }
    /* Best effort: a smaller buffer only means writers wait sooner. */
    (void)setsockopt(pair[1], SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    (void)setsockopt(pair[0], SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    *read_fd = pair[0];
    *write_fd = pair[1];
    return 0;
}

int fdl_pipe_open(int *read_fd, int *write_fd)
{
    int ends[2];
    if (pipe2(ends, O_CLOEXEC) != 0)
        return -errno;
    /* Best effort, as above. */
    (void)fcntl(ends[1], F_SETPIPE_SZ, PIPE_BUFFER_BYTES);
    *read_fd = ends[0];
    *write_fd = ends[1];
    return 0;
}

/* dup2 can fail with EBUSY while another thread opens a file (Linux) or EINTR. */
static int dup2_retrying(int from, int to)
{
    for (int attempt = 0; attempt < 1000; attempt++) {
        if (dup2(from, to) >= 0)
            return 0;
        if (errno != EBUSY && errno != EINTR)
            return -errno;
    }
    return -EBUSY;
}

int fdl_capture(int out_fd, int err_fd, int *saved)
{
    fflush(NULL);
    saved[0] = fcntl(1, F_DUPFD_CLOEXEC, 3);
    saved[1] = fcntl(2, F_DUPFD_CLOEXEC, 3);
    if ((saved[0] < 0 && errno != EBADF) || (saved[1] < 0 && errno != EBADF)) {
        int error = errno;
        if (saved[0] >= 0)
            close(saved[0]);
        if (saved[1] >= 0)
            close(saved[1]);
        return -error;
    }
    int rc = dup2_retrying(out_fd, 1);
    if (rc == 0)
        rc = dup2_retrying(err_fd, 2);
    if (rc != 0)
        fdl_release(saved);
    return rc;
}

int fdl_release(int *saved)
{
    fflush(NULL);
    int rc = 0;
    for (int i = 0; i < 2; i++) {
        int target = i + 1;
        int step = saved[i] >= 0 ? dup2_retrying(saved[i], target) : (close(target), 0);
        if (step != 0 && rc == 0)
            rc = step;
        if (saved[i] >= 0)
            close(saved[i]);
        saved[i] = -1;
    }
    return rc;
}

/* The extension's view of fdl_filesystem_facts (open_log.c), for choosing lock="auto". */
int fdl_needs_lock(int fd)
{
    int facts = fdl_filesystem_facts(fd);
    return facts < 0 ? facts : (facts & FDL_FS_NEEDS_LOCK) != 0;
}
