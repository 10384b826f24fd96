/*
 * fdlog.h - the public interface of skyrl_fdlog's C core.
 *
 * This header is also the cffi cdef (skyrl_fdlog/_build.py strips the
 * preprocessor lines), so it holds only plain declarations: no macros with
 * arguments, no includes the cdef needs.  Every call that can fail returns 0
 * or a positive value on success and -errno on failure.
 */
#ifndef FDLOG_H
#define FDLOG_H
#include <stddef.h>
#include <stdint.h>

/* Why fdl_open_log refused a path; the Python layer turns it into advice. */
enum fdl_refusal {
    FDL_OK = 0,
    FDL_SYSCALL = 1,        /* a system call failed; errno says why */
    FDL_SYMLINK = 2,        /* the log file or a guarded directory is a symlink */
    FDL_NOT_DIRECTORY = 3,  /* a component of the directory path is not a directory */
    FDL_FOREIGN_DIRECTORY = 4, /* owned by another user inside a sticky world-writable directory */
    FDL_HARD_LINK = 5,      /* the log file has other names */
    FDL_NOT_REGULAR = 6,    /* the log path exists but is not a regular file */
    FDL_FOREIGN_FILE = 7    /* the log file is owned by another user inside a sticky world-writable directory */
};

struct fdl_open_result {
    int refusal;            /* enum fdl_refusal */
    int owner_uid;          /* for FDL_FOREIGN_*: the owner found */
    char culprit[4096];     /* the path at fault */
};

/* Flags of fdl_open_log. */
enum fdl_open_flags {
    FDL_OPEN_EXCLUSIVE = 1  /* fail with -EEXIST when the file exists (new run files) */
};

/* Open (creating directories and the file as needed) a log for appending; a new file gets
 * `mode`, new directories `mode` plus search permission where it grants read (umask applied).
 * Returns the fd (O_APPEND, close-on-exec) or -errno, with `result` saying why. */
int fdl_open_log(const char *path, int flags, int mode, struct fdl_open_result *result);

/* Whether appends to fd need a lock around each batch (network and FUSE
 * filesystems): 1 yes, 0 no, -errno when fstatfs fails. */
int fdl_needs_lock(int fd);

/* A capture channel: an AF_UNIX stream socket pair whose reading end has
 * SO_PASSCRED, so every chunk read carries its writer's pid. */
int fdl_channel_open(int *read_fd, int *write_fd);

/* A pipe for output that one process alone writes (the actor's Python
 * sys.stdout or sys.stderr): cheaper to write than a channel, no credentials. */
int fdl_pipe_open(int *read_fd, int *write_fd);

/* Flush C stdio, save fds 1 and 2 (close-on-exec copies into saved[0..1])
 * and put out_fd on 1 and err_fd on 2. */
int fdl_capture(int out_fd, int err_fd, int *saved);

/* Flush C stdio and put saved[0..1] back on fds 1 and 2, closing them. */
int fdl_release(int *saved);

/* Settings of one helper process.  Those it gets on its command line are the rows of
 * csrc/shared/settings.h, in the same names and types (a compile-time check in
 * helper_start.c holds the two together); the rest say what it is handed. */
struct fdl_helper_settings {
    const char *helper_path;  /* the skyrl-fdlog-helper executable */
    const char *path;         /* the log: reopened after logrotate, and named in messages */
    const char *name;         /* actor name in records */
    const char *node;         /* node name in records */
    int raw;                  /* 1: payload only, no prefix */
    int lock;                 /* 1: fcntl lock + fdatasync around each batch */
    int idle_ms;              /* flush a partial line after this idle time */
    int snapshot_ms;          /* at most one carriage-return snapshot per this time */
    int gather_us;            /* after a wakeup, let more output arrive for this long */
    long buffer_bytes;        /* output kept in memory while the log cannot be written */
    long long max_bytes;      /* 0, or records are dropped once the file holds this much */
    int restarted_after;      /* pid of a helper that died, 0 on first start */
    int owner;                /* the process whose own pipes are handed over (see below) */
    int surface;              /* 1: copy error lines to surface_fd, for the terminal
                               * (0, as a zeroed struct has it: surface="off") */
    int surface_fd;           /* the actor's original stderr */
    int stderr_fd;            /* above 2: the helper's stderr (SKYRL_FDLOG_DEBUG); else, as
                               * in a zeroed struct, /dev/null */
};

/* Start a helper that reads out_read and err_read and appends records to
 * log_fd.  pipe_out_read and pipe_err_read (-1: none) are the reading ends of
 * pipes that only settings->owner writes; their bytes are recorded as its
 * out and err.  The helper detaches (no zombie, own session) and reports its
 * pid through *status_fd, which stays open until the helper exits: EOF there
 * means the helper is gone.  Returns 0 or -errno; -EPROTO when the helper
 * refused to start, with its reason in reason[0..reason_size) ("" otherwise; reason may be
 * NULL when reason_size is 0). */
int fdl_helper_start(const struct fdl_helper_settings *settings, int log_fd,
                     int out_read, int err_read, int pipe_out_read, int pipe_err_read,
                     int *status_fd, int *helper_pid, char *reason, size_t reason_size);

/* Append one 'fdlog' record (skyrl_fdlog's own note) with text, written under pid and
 * formatted as the helper of these settings would, in a single write(2).  For what the
 * actor says itself while no helper runs.  Returns 0 or -errno. */
int fdl_write_note(int log_fd, const struct fdl_helper_settings *settings, int pid,
                   const char *text);

/* The level of a line (levels.c), from the table skyrl_fdlog/levels.json: 0 none, 1 debug,
 * 2 info, 3 warning, 4 error, 5 critical; -1 when the table did not compile.  in_traceback
 * is the writer's state across lines (start at 0): a Python traceback is one block of
 * level error, up to and with its first line that is not indented. */
int fdl_level_of(const unsigned char *text, size_t length, int *in_traceback);

/* Leave a mark in err_channel (a channel's writing end; a copy is kept) when this process
 * dies of a fatal signal, for the helper to print its last lines (crash.c); -1 disarms.
 * Returns 0 or -errno. */
int fdl_mark_fatal_signals(int err_channel);

/* Leave the same mark now, for an exception that ends the actor (an actor's __init__ that
 * raised): the helper prints the last lines once this process is gone.  Nothing while
 * disarmed (surface="off").  Returns 0. */
int fdl_mark_exception(void);

/* One line as the records the helper writes for it (record.c), for records that Python writes
 * itself (Ray's own lines on the driver, _ray_logs.py): stream 1 out, 2 err, 3 fdlog, stamped
 * now_ms (milliseconds since the epoch), name and node sanitised as the helper does.  A line
 * longer than one record's payload becomes '+' fragments and a final ':' record, each at most
 * PIPE_BUF bytes with its '\n'; they go one after another into out, for which
 * 2 * length + 4096 bytes always suffice.  Returns the bytes written, -EINVAL when text
 * holds a '\n', -ENOSPC when out is too small. */
long fdl_format_line(const char *name, const char *node, int pid, int stream, long long now_ms,
                     const unsigned char *text, size_t length, unsigned char *out,
                     size_t capacity);

#endif
