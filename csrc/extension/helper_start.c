/*
 * helper_start.c - starting the helper process that writes the log.
 *
 * The helper is a separate executable started with posix_spawn, not a fork
 * of the actor: it carries none of the actor's memory (its RSS stays small),
 * it runs no code of the actor's after fork, and it lives on when the actor
 * segfaults or is OOM killed.  It detaches itself (forks once more, setsid)
 * so it never becomes a zombie of the actor and terminal or process-group
 * signals meant for the actor do not reach it.
 *
 * Its fds: 0-2 /dev/null, 3 the log, 4 and 5 the reading ends of the out and
 * err channels, 6 the status pipe on which it says "READY <pid>" and which
 * it holds open until it exits, and with an owner the reading ends of the
 * owner's own out and err pipes on 7 and 8, and with settings->surface_fd a
 * copy of it (the actor's original stderr) on 9.
 *
 * Also here: fdl_write_note, the one record the actor writes into the log
 * itself, when no helper runs to write it (a restart, the fallback, pid 1).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fdlog.h"
#include "internal.h"

#define READY_TIMEOUT_MS 10000
#define FIRST_PRIVATE_FD 100 /* above the fds the helper is given */

extern char **environ;

enum { MAX_HANDED_OVER = 6, SURFACE_FD = 9 };

/* Copies of the fds to hand over, numbered out of the way of 3..8 so the
 * dup2 file actions cannot overwrite one another. */
static int hand_over(const int *fds, int count, int *copies)
{
    for (int i = 0; i < count; i++) {
        copies[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, FIRST_PRIVATE_FD);
        if (copies[i] < 0) {
            int error = errno;
            while (i-- > 0)
                close(copies[i]);
            return -error;
        }
    }
    return 0;
}

static int spawn(const struct fdl_helper_settings *s, const int *copies, int count,
                 int surface_copy, pid_t *child)
{
    char surface[16], raw[16], lock[16], idle[32], snapshot[32], gather[32], buffer[48], cap[48],
        restarted[32], owner[32];
    snprintf(surface, sizeof surface, "surface=%d", surface_copy >= 0);
    snprintf(raw, sizeof raw, "raw=%d", s->raw);
    snprintf(lock, sizeof lock, "lock=%d", s->lock);
    snprintf(idle, sizeof idle, "idle_ms=%d", s->idle_ms);
    snprintf(snapshot, sizeof snapshot, "snapshot_ms=%d", s->snapshot_ms);
    snprintf(gather, sizeof gather, "gather_us=%d", s->gather_us);
    snprintf(buffer, sizeof buffer, "buffer_bytes=%ld", s->buffer_bytes);
    snprintf(cap, sizeof cap, "max_bytes=%lld", s->max_bytes);
    snprintf(restarted, sizeof restarted, "restarted_after=%d", s->restarted_after);
    snprintf(owner, sizeof owner, "owner=%d", count == MAX_HANDED_OVER ? s->owner_pid : 0);
    size_t name_size = strlen(s->name) + 6, node_size = strlen(s->node) + 6,
           path_size = strlen(s->log_path) + 6;
    char *name = malloc(name_size), *node = malloc(node_size), *path = malloc(path_size);
    int rc = -ENOMEM;
    if (name == NULL || node == NULL || path == NULL)
        goto out;
    snprintf(name, name_size, "name=%s", s->name);
    snprintf(node, node_size, "node=%s", s->node);
    snprintf(path, path_size, "path=%s", s->log_path);
    char *argv[] = {"skyrl-fdlog-helper", name, node, path, raw, lock, idle, snapshot,
                    gather, buffer, cap, restarted, owner, surface, NULL};

    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attributes;
    if ((rc = posix_spawn_file_actions_init(&actions)) != 0) {
        rc = -rc;
        goto out;
    }
    posix_spawnattr_init(&attributes);
    /* Start with default signal handling whatever the actor set (Python ignores SIGPIPE). */
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(&attributes, &all);
    posix_spawnattr_setsigmask(&attributes, &none);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    for (int target = 0; target < 3; target++)
        posix_spawn_file_actions_addopen(&actions, target, "/dev/null", O_RDWR, 0);
    for (int i = 0; i < count; i++)
        posix_spawn_file_actions_adddup2(&actions, copies[i], 3 + i);
    if (surface_copy >= 0)
        posix_spawn_file_actions_adddup2(&actions, surface_copy, SURFACE_FD);
    rc = -posix_spawn(child, s->helper_path, &actions, &attributes, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
out:
    free(name);
    free(node);
    free(path);
    return rc;
}

/* Wait for "READY <pid>\n"; anything else is the helper's reason for failing. */
static int await_ready(int status_fd, int *helper_pid)
{
    char line[512];
    size_t used = 0;
    while (used < sizeof line - 1) {
        struct pollfd p = {.fd = status_fd, .events = POLLIN};
        int ready = poll(&p, 1, READY_TIMEOUT_MS);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready <= 0)
            return -ETIMEDOUT;
        ssize_t n = read(status_fd, line + used, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -ECHILD; /* the helper exited before it was ready */
        if (line[used++] == '\n')
            break;
    }
    line[used] = '\0';
    if (sscanf(line, "READY %d", helper_pid) != 1)
        return -EPROTO;
    return 0;
}

/* Move fd above 0-2 (closing the original): a process whose fd 1 or 2 is closed would
 * otherwise write its output into our pipe.  Returns the fd, or -1 with errno set. */
static int above_standard_fds(int fd)
{
    if (fd > 2)
        return fd;
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    int error = errno;
    close(fd);
    errno = error;
    return moved;
}

int fdl_helper_start(const struct fdl_helper_settings *settings, int log_fd,
                     int out_read, int err_read, int pipe_out_read, int pipe_err_read,
                     int *status_fd, int *helper_pid)
{
    int status[2];
    if (pipe2(status, O_CLOEXEC) != 0)
        return -errno;
    status[0] = above_standard_fds(status[0]);
    status[1] = above_standard_fds(status[1]);
    if (status[0] < 0 || status[1] < 0) {
        int error = errno;
        for (int i = 0; i < 2; i++)
            if (status[i] >= 0)
                close(status[i]);
        return -error;
    }
    int fds[MAX_HANDED_OVER + 1] = {log_fd, out_read, err_read, status[1], pipe_out_read,
                                pipe_err_read};
    int count = pipe_out_read >= 0 && pipe_err_read >= 0 ? MAX_HANDED_OVER : 4;
    int copies[MAX_HANDED_OVER + 1];
    /* The surface fd last, copied like the others out of the way of 3..9. */
    fds[count] = settings->surface_fd;
    int handed = count + (settings->surface != 0);
    int rc = hand_over(fds, handed, copies);
    if (rc == 0) {
        pid_t child;
        rc = spawn(settings, copies, count, handed > count ? copies[count] : -1, &child);
        for (int i = 0; i < handed; i++)
            close(copies[i]);
        if (rc == 0) {
            /* The first process only forks the real helper and exits: reap it. */
            while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
                ;
        }
    }
    close(status[1]);
    if (rc == 0)
        rc = await_ready(status[0], helper_pid);
    if (rc != 0) {
        close(status[0]);
        return rc;
    }
    *status_fd = status[0];
    return 0;
}

int fdl_write_note(int log_fd, const struct fdl_helper_settings *settings, int pid,
                   const char *text)
{
    struct fdl_record_format format;
    fdl_format_init(&format, settings->name, settings->node, settings->raw);
    char label[FDL_PREFIX_MAX], record[FDL_RECORD_MAX];
    size_t label_length = fdl_format_label(&format, label, pid, FDL_STREAM_META);
    size_t text_length = strlen(text);
    if (text_length > fdl_payload_max(&format))
        text_length = fdl_payload_max(&format);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now); /* a stamp, not a timing */
    size_t length = fdl_format_record(&format, record,
                                      (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000, label,
                                      label_length, FDL_MARK_LINE, (const unsigned char *)text,
                                      text_length);
    /* On a network filesystem appends of several machines stay whole only under the lock
     * the helper takes too (log_writer.c). */
    struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (settings->lock)
        while (fcntl(log_fd, F_SETLKW, &lock) != 0 && errno == EINTR)
            ;
    ssize_t written = write(log_fd, record, length); /* one record: one write, kept whole */
    int rc = written == (ssize_t)length ? 0 : written < 0 ? -errno : -EIO;
    if (settings->lock) {
        lock.l_type = F_UNLCK;
        fcntl(log_fd, F_SETLK, &lock);
    }
    return rc;
}
