/*
 * helper_start.c - starting the helper process that writes the log.
 * Built into the cffi extension (skyrl_fdlog._fdlog) only.
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
 * copy of it (the actor's original stderr) on 9.  With settings->stderr_fd
 * (SKYRL_FDLOG_DEBUG) that file is its fd 2 instead of /dev/null.
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
#include "settings.h"

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

/* Every row of settings.h must be a field of struct fdl_helper_settings of that type: the
 * struct is written out by hand in fdlog.h, since cffi reads the header and not macros. */
#define SAME_TYPE(type, field, kind)                                                            \
    _Static_assert(__builtin_types_compatible_p(                                                \
                       __typeof__(((struct fdl_helper_settings *)0)->field), type),             \
                   "struct fdl_helper_settings." #field " must be a " #type " (settings.h)");
FDL_HELPER_SETTINGS(SAME_TYPE)
#undef SAME_TYPE

/* The helper's command line: "name=value" for each row of settings.h. */
#define ARGUMENT_TEXT(field) "%s=%s", #field, s->field
#define ARGUMENT_NUMBER(field) "%s=%lld", #field, (long long)s->field

/* Free what write_arguments allocated: the strings after argv[0], up to the NULL. */
static void free_arguments(char **argv)
{
    for (int i = 1; argv[i] != NULL; i++)
        free(argv[i]);
}

/* argv[0], then the settings, then NULL; 0 or -ENOMEM (argv then holds nothing to free). */
static int write_arguments(const struct fdl_helper_settings *s, char **argv)
{
    int i = 0;
    argv[i++] = "skyrl-fdlog-helper";
#define ARGUMENT(type, field, kind)                                                             \
    if (asprintf(&argv[i], ARGUMENT_##kind(field)) < 0)                                         \
        goto fail;                                                                              \
    i++;
    FDL_HELPER_SETTINGS(ARGUMENT)
#undef ARGUMENT
    argv[i] = NULL;
    return 0;
fail:
    argv[i] = NULL;
    free_arguments(argv);
    return -ENOMEM;
}

static int spawn(const struct fdl_helper_settings *settings, const int *copies, int count,
                 int surface_copy, int stderr_copy, pid_t *child)
{
    /* What the helper is told matches what it is handed. */
    struct fdl_helper_settings sent = *settings;
    sent.surface = surface_copy >= 0;
    if (count != MAX_HANDED_OVER)
        sent.owner = 0;
    char *argv[FDL_HELPER_SETTING_COUNT + 2];
    int rc = write_arguments(&sent, argv);
    if (rc != 0)
        return rc;

    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attributes;
    if ((rc = posix_spawn_file_actions_init(&actions)) != 0) {
        free_arguments(argv);
        return -rc;
    }
    posix_spawnattr_init(&attributes);
    /* Start with default signal handling whatever the actor set (Python ignores SIGPIPE). */
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(&attributes, &all);
    posix_spawnattr_setsigmask(&attributes, &none);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    for (int target = 0; target < 3; target++) {
        if (target == 2 && stderr_copy >= 0)
            posix_spawn_file_actions_adddup2(&actions, stderr_copy, 2);
        else
            posix_spawn_file_actions_addopen(&actions, target, "/dev/null", O_RDWR, 0);
    }
    for (int i = 0; i < count; i++)
        posix_spawn_file_actions_adddup2(&actions, copies[i], 3 + i);
    if (surface_copy >= 0)
        posix_spawn_file_actions_adddup2(&actions, surface_copy, SURFACE_FD);
    rc = -posix_spawn(child, settings->helper_path, &actions, &attributes, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    free_arguments(argv);
    return rc;
}

/* Wait for "READY <pid>\n"; any other line is the helper's reason for failing, copied to
 * reason. */
static int await_ready(int status_fd, int *helper_pid, char *reason, size_t reason_size)
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
    if (sscanf(line, "READY %d", helper_pid) == 1)
        return 0;
    line[strcspn(line, "\n")] = '\0';
    const char *words = strncmp(line, "ERROR ", 6) == 0 ? line + 6 : line;
    snprintf(reason, reason_size, "%s", words);
    return -EPROTO;
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
                     int *status_fd, int *helper_pid, char *reason, size_t reason_size)
{
    if (reason_size > 0)
        reason[0] = '\0';
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
    int fds[MAX_HANDED_OVER + 2] = {log_fd, out_read, err_read, status[1], pipe_out_read,
                                pipe_err_read};
    int count = pipe_out_read >= 0 && pipe_err_read >= 0 ? MAX_HANDED_OVER : 4;
    int copies[MAX_HANDED_OVER + 2];
    /* Then the surface fd and the stderr fd, copied like the others out of the way of 3..9. */
    int handed = count;
    int surface_at = settings->surface ? handed++ : -1;
    int stderr_at = settings->stderr_fd > 2 ? handed++ : -1;
    if (surface_at >= 0)
        fds[surface_at] = settings->surface_fd;
    if (stderr_at >= 0)
        fds[stderr_at] = settings->stderr_fd;
    int rc = hand_over(fds, handed, copies);
    if (rc == 0) {
        pid_t child;
        rc = spawn(settings, copies, count, surface_at >= 0 ? copies[surface_at] : -1,
                   stderr_at >= 0 ? copies[stderr_at] : -1, &child);
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
        rc = await_ready(status[0], helper_pid, reason, reason_size);
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
