/*
 * helper.c - the skyrl-fdlog-helper executable: reads the capture channels,
 * assembles lines per writer (assemble.c) and hands records to the writing
 * thread (log_writer.c).
 *
 * Started by fdl_helper_start (helper_start.c) with the log on fd 3, the out
 * and err channels on 4 and 5, the status pipe on 6 and, when the actor's
 * Python output has pipes of its own (owner=PID), their reading ends on 7
 * and 8; bytes from those are the owner's.  With surface=1, fd 9 is the
 * actor's original stderr, to which error lines are copied (see "Error
 * lines to the terminal" below).  It exits once every
 * writer has closed the channels (orphaned children included) and all
 * records are written, or after SIGTERM once what is readable is written;
 * its last words on the status pipe say which ("EXIT eof" / "EXIT term").
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "fdlog.h"
#include "internal.h"
#include "levels.h"
#include "settings.h"

enum { LOG_FD = 3, OUT_FD = 4, ERR_FD = 5, STATUS_FD = 6, PIPE_OUT_FD = 7, PIPE_ERR_FD = 8,
       SURFACE_FD = 9 };
enum { CHANNEL_COUNT = 4 };

#define READ_CHUNK (64 * 1024)
#define READS_PER_ROUND 64        /* per channel, so one busy writer cannot starve the other */
#define GIVE_UP_AFTER_MS 10000    /* at exit, how long to wait for a failing or hung log */
#define FLUSH_DRAIN_ROUNDS 64     /* rounds of reads before a drain gives up (drain_channels) */
#define FLUSH_WAIT_MS 5000        /* how long a flush waits for the log before answering no */
#define POLL_RETRY_MS 10          /* after poll itself failed (ENOMEM): try again this soon */

/* The rows of settings.h, each given on the command line as name=value. */
struct settings {
#define FIELD(type, field, kind) type field;
    FDL_HELPER_SETTINGS(FIELD)
#undef FIELD
};

/* Older headers (the manylinux_2_17 build) lack these; kernels before 6.5 (5.3 for
 * pidfd_open) refuse them, and the helper then keeps writers apart by pid alone. */
#ifndef SO_PASSPIDFD
#define SO_PASSPIDFD 76
#endif
#ifndef SCM_PIDFD
#define SCM_PIDFD 0x04
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

static struct settings settings;
static struct fdl_assembler *assembler;
static volatile sig_atomic_t stop_requested;

/* A pid names a process only while it lives: once a writer exits mid-line, a new process
 * can get its pid (and every writer outside the helper's pid namespace reads as pid 0).
 * For each socket slot holding an unfinished line the helper keeps a pidfd of its writer.
 * While one of them has exited (or the slot is pid 0's), that channel's reads come with a
 * pidfd of their writer (SO_PASSPIDFD; costly, so only then), and bytes of another
 * process under the same pid end the slot's line instead of joining it.  Indexed like
 * assembler->slots. */
struct writer {
    int pid, stream;    /* the slot it was taken for; stream 0: none */
    int pidfd;          /* to see it exit; -1 once it has, or when none could be had */
    uint64_t id;        /* the pidfd's inode: one per process (pidfs, Linux 6.9); 0 unknown */
    int exited;
};
static struct writer writers[FDL_SLOT_COUNT];
static int identifying[2];  /* SO_PASSPIDFD is on for the out (0) and err (1) channel */
static int outsider_noted;

static int64_t clock_us(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t clock_ms(clockid_t clock)
{
    return clock_us(clock) / 1000;
}

/* The assembler times idle lines and snapshots on the monotonic clock, which a step of the
 * wall clock (NTP, an operator's date -s) cannot stall or rush; records are stamped with
 * the wall clock, whose distance to the monotonic one is taken anew at every reading. */
static int64_t now_ms(void)
{
    int64_t now = clock_ms(CLOCK_MONOTONIC);
    assembler->wall_offset_ms = clock_ms(CLOCK_REALTIME) - now;
    return now;
}

static uint64_t process_id(int pidfd)
{
    struct stat st;
    return fstat(pidfd, &st) == 0 ? (uint64_t)st.st_ino : 0;
}

static int has_exited(int pidfd)
{
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    return poll(&p, 1, 0) == 1;
}

/*
 * Error lines to the terminal.  The log takes every line off the terminal; lines that are
 * errors (levels.c: level error or graver, a Python traceback as one block) are also
 * copied to the actor's original stderr, which Ray forwards to the driver from any node.
 * Each is attributed "NAME[PID] " (PID: the process that wrote it, a child's too).  At
 * most SURFACE_BURST lines per SURFACE_WINDOW_MS: past that they are counted, and one
 * line says how many were held back and where they are.
 */
#define SURFACE_BURST 40
#define SURFACE_WINDOW_MS 10000
#define SURFACE_WRITERS 256  /* per-writer state kept, hashed by (pid, stream) */

struct surfaced_writer {
    int pid, stream;        /* stream 0: unused */
    int in_traceback;       /* levels.c's state across this writer's lines */
    int showing;            /* the line under way (a '+' chain) is copied */
    int mid_line;           /* the last record was a '+' fragment */
};
static struct surfaced_writer surfaced[SURFACE_WRITERS];
static int64_t surface_window_start = -SURFACE_WINDOW_MS;
static long surface_shown, surface_held_back;
static int surface_path_told;

static void surface_write(const char *text, size_t length)
{
    /* A terminal whose reader stopped (a full pipe, a tty held with ^S) must not stall the
     * log: such a line is dropped here (it is in the log).  The fd cannot be made
     * non-blocking: its file description is the actor's own stderr too. */
    struct pollfd p = {.fd = SURFACE_FD, .events = POLLOUT};
    if (poll(&p, 1, 0) != 1 || !(p.revents & POLLOUT))
        return;
    while (length > 0) {
        ssize_t n = write(SURFACE_FD, text, length);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* the terminal is gone or full: the log has the line anyway */
        text += n;
        length -= (size_t)n;
    }
}

/* Say how many lines the last window held back; start a new window when it is over. */
static void surface_window(int64_t now)
{
    if (now - surface_window_start < SURFACE_WINDOW_MS)
        return;
    if (surface_held_back > 0) {
        char text[8400];
        int n = snprintf(text, sizeof text,
                         "skyrl_fdlog: %s: %ld more error lines not shown here (at most %d per "
                         "%d s); every line is in %s\n", settings.name, surface_held_back,
                         SURFACE_BURST, SURFACE_WINDOW_MS / 1000, settings.path);
        surface_write(text, n < (int)sizeof text ? (size_t)n : sizeof text - 1);
    }
    surface_window_start = now;
    surface_shown = surface_held_back = 0;
}

/* Returns whether the line is an error line (shown or held back). */
static int surface(const struct fdl_slot *slot, const char *payload, size_t length, char mark)
{
    int stream = FDL_STREAM_OF(slot->stream);
    if (stream != FDL_STREAM_OUT && stream != FDL_STREAM_ERR)
        return 0;
    unsigned hash = ((unsigned)slot->pid * 2654435761u + (unsigned)slot->stream) % SURFACE_WRITERS;
    struct surfaced_writer *w = &surfaced[hash];
    if (w->pid != slot->pid || w->stream != slot->stream) /* a new writer, or a collision */
        *w = (struct surfaced_writer){.pid = slot->pid, .stream = slot->stream};
    if (!w->mid_line)
        w->showing = fdl_level_of((const unsigned char *)payload, length, &w->in_traceback) >=
                     FDL_LEVEL_ERROR;
    w->mid_line = mark == FDL_MARK_FRAGMENT;
    if (!w->showing)
        return 0;
    surface_window(clock_ms(CLOCK_MONOTONIC));
    if (surface_shown >= SURFACE_BURST) {
        surface_held_back++;
        return 1;
    }
    surface_shown++;
    char text[FDL_RECORD_MAX + 8400];
    int n = 0;
    if (!surface_path_told) {
        n = snprintf(text, sizeof text, "skyrl_fdlog: error lines of %s follow; all its output "
                     "is in %s\n", settings.name, settings.path);
        surface_path_told = 1;
    }
    n += snprintf(text + n, sizeof text - (size_t)n, "%s[%d] %.*s\n", settings.name, slot->pid,
                  (int)length, payload);
    surface_write(text, n < (int)sizeof text ? (size_t)n : sizeof text - 1);
    return 1;
}

/*
 * Last words.  A process of the actor that dies of a fatal signal says so first (crash.c:
 * a 'D' byte with an fd on the err channel); an actor whose __init__ raised says so with
 * 'X' (_last_words.py), after which Ray ends its process.  Once that process is gone and
 * what it wrote is read, the helper prints to the original stderr, once, with the log's
 * path, the last LAST_WORDS records of all the actor's processes before the mark (the
 * cause, printed by a child just before, is among them) and the first LAST_WORDS after it
 * (the crash report: faulthandler's dump of every thread would push the cause out of one
 * window).  Before them comes the last error line of each process (at most CAUSE_PROCESSES)
 * that the window does not hold: a child's cause followed by its parents' long reports.
 * A process killed by SIGKILL cannot say anything: the helper itself sees the
 * owner (the actor's process) end and asks its memory cgroup whether the kernel's OOM
 * killer struck meanwhile ("The OOM killer" below); any other end without a mark (restore,
 * exit, Ray's kill) is orderly and prints nothing.  Part of surfacing: surface="off" turns
 * it off too.
 */
#define LAST_WORDS 20

struct last_record {
    int pid;
    size_t length;
    char payload[FDL_PAYLOAD_MAX_RAW];
};
static struct last_record last_records[LAST_WORDS], crash_records[LAST_WORDS];
static int last_next, last_count, crash_count;
/* The last error line of each process, for the last words too: a child's cause is often
 * followed by its parents' reports, long enough to push it out of the window (vLLM: a
 * worker's traceback ending in the cause, then EngineCore's, then the actor's). */
#define CAUSE_PROCESSES 8
static struct last_record causes[CAUSE_PROCESSES];
static int cause_next;
static int dying, dying_pid, dying_pidfd = -1, last_words_said;
static int64_t dying_since_ms;
static char dying_cause; /* 'D' a fatal signal, 'X' an exception, 'K' the OOM killer */

static void remember(int pid, const char *payload, size_t length, int error)
{
    struct last_record *r;
    if (error && !dying) {
        int k = 0;
        while (k < CAUSE_PROCESSES && causes[k].pid != pid)
            k++;
        r = &causes[k < CAUSE_PROCESSES ? k : cause_next];
        if (k == CAUSE_PROCESSES)
            cause_next = (cause_next + 1) % CAUSE_PROCESSES;
        r->pid = pid;
        r->length = length < sizeof r->payload ? length : sizeof r->payload;
        memcpy(r->payload, payload, r->length);
    }
    if (dying) {
        if (crash_count == LAST_WORDS)
            return;
        r = &crash_records[crash_count++];
    } else {
        r = &last_records[last_next];
        last_next = (last_next + 1) % LAST_WORDS;
        if (last_count < LAST_WORDS)
            last_count++;
    }
    r->pid = pid;
    r->length = length < sizeof r->payload ? length : sizeof r->payload;
    memcpy(r->payload, payload, r->length);
}

static void say_record(const struct last_record *r)
{
    char text[FDL_RECORD_MAX + FDL_NAME_MAX + 16];
    int n = snprintf(text, sizeof text, "%s[%d] %.*s\n", settings.name, r->pid, (int)r->length,
                     r->payload);
    surface_write(text, n < (int)sizeof text ? (size_t)n : sizeof text - 1);
}

static int in_window(const struct last_record *cause)
{
    for (int i = 0; i < last_count; i++)
        if (last_records[i].pid == cause->pid && last_records[i].length == cause->length &&
            memcmp(last_records[i].payload, cause->payload, cause->length) == 0)
            return 1;
    return 0;
}

static void say_cause(const struct last_record *r)
{
    char text[FDL_RECORD_MAX + FDL_NAME_MAX + 64];
    int n = snprintf(text, sizeof text, "%s[%d] (its last error line) %.*s\n", settings.name,
                     r->pid, (int)r->length, r->payload);
    surface_write(text, n < (int)sizeof text ? (size_t)n : sizeof text - 1);
}

static void note_dying(int pid, char cause)
{
    if (dying || last_words_said)
        return;
    dying = 1;
    dying_cause = cause;
    dying_pid = pid;
    dying_pidfd = pid > 0 ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;
    dying_since_ms = clock_ms(CLOCK_MONOTONIC);
}

/* Without a pidfd (kernels before 5.3, or pid 0): gone once its pid is; a zombie counts as
 * alive until reaped, which only delays the words.  A process whose __init__ raised is as
 * good as gone EXCEPTION_REPORT_MS after its mark: Ray's report of the exception is written
 * by then, while its exit can wait long on the cleanup of the libraries it loaded (vLLM's
 * atexit handlers take seconds), past a driver that shuts Ray down on the error. */
#define EXCEPTION_REPORT_MS 1000
static int dying_is_gone(void)
{
    if (dying_cause == 'X' && clock_ms(CLOCK_MONOTONIC) - dying_since_ms >= EXCEPTION_REPORT_MS)
        return 1;
    if (dying_pidfd >= 0)
        return has_exited(dying_pidfd);
    return dying_pid > 0 && kill(dying_pid, 0) != 0 && errno == ESRCH;
}

static void say_last_words(void)
{
    const char *what = dying_cause == 'D' ? "died of a fatal signal"
                       : dying_cause == 'X' ? "ended: the actor's __init__ raised an exception"
                                            : "was killed by the kernel's OOM killer";
    char text[FDL_RECORD_MAX + 8400];
    int n = snprintf(text, sizeof text,
                     "skyrl_fdlog: %s: process %d %s; the last %d lines of the actor's "
                     "processes before it and the first %d after it, led by the last error line "
                     "of each process that they miss (every line is in %s):\n",
                     settings.name, dying_pid, what, last_count, crash_count, settings.path);
    surface_write(text, n < (int)sizeof text ? (size_t)n : sizeof text - 1);
    for (int k = 0; k < CAUSE_PROCESSES; k++)
        if (causes[k].length > 0 && !in_window(&causes[k]))
            say_cause(&causes[k]);
    for (int i = 0; i < last_count; i++)
        say_record(&last_records[(last_next - last_count + i + LAST_WORDS) % LAST_WORDS]);
    for (int i = 0; i < crash_count; i++)
        say_record(&crash_records[i]);
    last_words_said = 1;
    if (dying_pidfd >= 0)
        close(dying_pidfd);
    dying_pidfd = -1;
}

/*
 * The OOM killer.  Its SIGKILL leaves the victim no time for a mark, and from inside a
 * process it looks like any other SIGKILL.  From the helper, which outlives the actor, it
 * does not: the kernel counts every OOM kill in the victim's memory cgroup (oom_kill in
 * cgroup v2's memory.events, which counts its descendants' kills too, and in v1's
 * memory.oom_control), whether the cgroup's limit or the machine's memory ran out.  The
 * helper reads the owner's counter when it starts and again once the owner (the actor's
 * process) is gone: more kills mean the owner was killed for memory, or, in a cgroup that
 * other processes share, that one of them was (docs/integration.md says what that costs).
 * Ray's kill, an exit or restore() leave the counter alone.  Without a memory cgroup to
 * read (the root cgroup, no /sys/fs/cgroup) nothing is watched.
 */
static char oom_counter_path[4200];
static long long oom_kills_at_start = -1;
static int owner_pidfd = -1;

static long long read_oom_kills(void)
{
    FILE *f = fopen(oom_counter_path, "re");
    long long kills = -1;
    char line[256];
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "oom_kill %lld", &kills) == 1)
            break;
    if (f != NULL)
        fclose(f);
    return kills;
}

/* The owner's memory cgroup from /proc/PID/cgroup: a v1 line "N:...memory...:/PATH" (its
 * counter under /sys/fs/cgroup/memory), else the v2 line "0::/PATH". */
static void watch_owner(void)
{
    char name[64], line[4300];
    snprintf(name, sizeof name, "/proc/%d/cgroup", settings.owner);
    FILE *f = settings.owner > 0 ? fopen(name, "re") : NULL;
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        char *controllers = strchr(line, ':');
        char *path = controllers != NULL ? strchr(controllers + 1, ':') : NULL;
        if (path == NULL)
            continue;
        *path++ = '\0';
        controllers++;
        char list[300];
        snprintf(list, sizeof list, ",%s,", controllers);
        if (strstr(list, ",memory,") != NULL) {
            snprintf(oom_counter_path, sizeof oom_counter_path,
                     "/sys/fs/cgroup/memory%s/memory.oom_control", path);
            break;
        }
        if (controllers[0] == '\0')
            snprintf(oom_counter_path, sizeof oom_counter_path,
                     "/sys/fs/cgroup%s/memory.events", path);
    }
    if (f != NULL)
        fclose(f);
    oom_kills_at_start = oom_counter_path[0] != '\0' ? read_oom_kills() : -1;
    if (oom_kills_at_start >= 0)
        owner_pidfd = (int)syscall(SYS_pidfd_open, settings.owner, 0);
}

/* The owner has exited: killed for memory, if the counter says so. */
static void owner_ended(void)
{
    close(owner_pidfd);
    owner_pidfd = -1;
    if (read_oom_kills() > oom_kills_at_start)
        note_dying(settings.owner, 'K');
}

/* The channels ended: the owner closed them by restore() (it lives on) or by dying, in
 * which case its exit is at most moments away (the kernel closes a dying process's files
 * before it reports the exit): /proc/PID/stat's flags say PF_EXITING. */
static void await_owner(void)
{
    char name[64], stat_line[1024];
    snprintf(name, sizeof name, "/proc/%d/stat", settings.owner);
    FILE *f = fopen(name, "re");
    size_t n = f != NULL ? fread(stat_line, 1, sizeof stat_line - 1, f) : 0;
    if (f != NULL)
        fclose(f);
    stat_line[n] = '\0';
    char *after_name = strrchr(stat_line, ')');
    unsigned long flags = 0;
    /* after the name: state ppid pgrp session tty_nr tpgid flags */
    if (after_name != NULL)
        sscanf(after_name + 1, " %*c %*d %*d %*d %*d %*d %lu", &flags);
    struct pollfd p = {.fd = owner_pidfd, .events = POLLIN};
    if ((flags & 0x4 /* PF_EXITING */) != 0 || n == 0)
        poll(&p, 1, 1000);
    if (has_exited(owner_pidfd))
        owner_ended();
}

/* Records made so far (lines, or pieces of long ones): read_channel counts a round's. */
static size_t records_collected;

static void collect_record(void *context, const char *record, size_t length, char mark)
{
    (void)context;
    records_collected++;
    fdl_writer_add(record, length);
    const struct fdl_slot *slot = assembler->emitting;
    if (!settings.surface || slot == NULL)
        return;
    /* the payload: the record's end, before its '\n' */
    const char *payload = record + length - 1 - assembler->emitting_length;
    int error = surface(slot, payload, assembler->emitting_length, mark);
    int stream = FDL_STREAM_OF(slot->stream);
    if (stream == FDL_STREAM_OUT || stream == FDL_STREAM_ERR)
        remember(slot->pid, payload, assembler->emitting_length, error);
}

static void forget(struct writer *w)
{
    if (w->pidfd >= 0)
        close(w->pidfd);
    *w = (struct writer){.pidfd = -1};
}

/* Could the bytes whose writer is pidfd be the tracked writer's? */
static int same_writer(const struct writer *w, int pidfd)
{
    uint64_t id = process_id(pidfd);
    if (w->id != 0 && id != 0)
        return w->id == id;
    /* Without inodes to compare: once the tracked writer has exited, only bytes of an
     * exited process can still be its own. */
    return !w->exited || has_exited(pidfd);
}

/* After a chunk was fed: start tracking the writer of the slot it went to when that slot
 * holds an unfinished line, and stop once it holds none (a slot is kept for its writer
 * after its lines end, but bytes of a new process under the pid then join nothing).
 * Takes pidfd (the chunk's writer, or -1). */
static void track(struct fdl_slot *slot, int pidfd, int64_t now)
{
    struct writer *w = &writers[slot - assembler->slots];
    int idle = slot->stream == 0 || fdl_slot_is_idle(assembler, slot, now);
    if (idle || (w->stream == slot->stream && w->pid == slot->pid)) {
        if (pidfd >= 0)
            close(pidfd);
        if (idle)
            forget(w);
        return;
    }
    forget(w);
    *w = (struct writer){.pid = slot->pid, .stream = slot->stream, .pidfd = pidfd};
    if (w->pidfd < 0 && slot->pid > 0) {
        w->pidfd = (int)syscall(SYS_pidfd_open, slot->pid, 0);
        w->exited = w->pidfd < 0 && errno == ESRCH;
    }
    if (w->pidfd >= 0) {
        w->id = process_id(w->pidfd);
        w->exited = has_exited(w->pidfd);
    }
}

static void feed_socket_chunk(int pid, int pidfd, int stream, const unsigned char *data,
                              size_t length)
{
    int64_t now = now_ms();
    if (pid == 0 && !outsider_noted) {
        fdl_assembler_note(assembler, getpid(),
                           "a process outside this helper's pid namespace writes to the log; "
                           "the kernel gives no pid for it: its records carry pid 0", now);
        outsider_noted = 1;
    }
    struct fdl_slot *held = fdl_assembler_held(assembler, pid, stream);
    if (held != NULL && pidfd >= 0 && !same_writer(&writers[held - assembler->slots], pidfd)) {
        fdl_assembler_part(assembler, held, now);
        forget(&writers[held - assembler->slots]);
    }
    fdl_assembler_feed(assembler, pid, stream, data, length, now);
    track(&assembler->slots[assembler->last_slot], pidfd, now);
}

/* Once a round, before reading: drop what no slot holds any more, see which writers
 * exited, and ask for the writers' pidfds on a channel exactly while it has an exited (or
 * pid 0) writer. */
static void watch_writers(void)
{
    struct pollfd fds[FDL_SLOT_COUNT];
    int index[FDL_SLOT_COUNT], count = 0, wanted[2] = {0, 0};
    for (int i = 0; i < FDL_SLOT_COUNT; i++) {
        struct writer *w = &writers[i];
        const struct fdl_slot *slot = &assembler->slots[i];
        if (w->stream != 0 && (slot->stream != w->stream || slot->pid != w->pid))
            forget(w);
        if (w->pidfd >= 0) {
            fds[count] = (struct pollfd){.fd = w->pidfd, .events = POLLIN};
            index[count++] = i;
        }
    }
    if (count > 0 && poll(fds, (nfds_t)count, 0) > 0) {
        for (int k = 0; k < count; k++) {
            if (fds[k].revents != 0) {
                close(writers[index[k]].pidfd);
                writers[index[k]].pidfd = -1;
                writers[index[k]].exited = 1;
            }
        }
    }
    for (int i = 0; i < FDL_SLOT_COUNT; i++)
        if (writers[i].stream != 0 && (writers[i].exited || writers[i].pid == 0))
            wanted[FDL_STREAM_OF(writers[i].stream) - 1] = 1;
    for (int c = 0; c < 2; c++)
        if (wanted[c] != identifying[c] &&
            setsockopt(OUT_FD + c, SOL_SOCKET, SO_PASSPIDFD, &wanted[c], sizeof wanted[c]) == 0)
            identifying[c] = wanted[c];
}

/* One read from a socket channel: the writer's pid comes with the bytes, and its pidfd
 * while SO_PASSPIDFD is on (-1 otherwise). */
static ssize_t receive(int fd, unsigned char *data, size_t size, int *pid, int *pidfd,
                       int *passed_fd)
{
    char control[CMSG_SPACE(sizeof(struct ucred)) + 2 * CMSG_SPACE(sizeof(int))];
    struct iovec iov = {.iov_base = data, .iov_len = size};
    struct msghdr message = {.msg_iov = &iov, .msg_iovlen = 1,
                             .msg_control = control, .msg_controllen = sizeof control};
    ssize_t n = recvmsg(fd, &message, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    *pid = 0;
    *pidfd = -1;
    *passed_fd = -1;
    for (struct cmsghdr *c = n > 0 ? CMSG_FIRSTHDR(&message) : NULL; c != NULL;
         c = CMSG_NXTHDR(&message, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS)
            *pid = ((struct ucred *)(void *)CMSG_DATA(c))->pid;
        else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_PIDFD)
            memcpy(pidfd, CMSG_DATA(c), sizeof *pidfd);
        else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
                 c->cmsg_len == CMSG_LEN(sizeof(int)))
            memcpy(passed_fd, CMSG_DATA(c), sizeof *passed_fd);
    }
    return n;
}

/* flush() in the actor (skyrl_fdlog.flush) sends, on each socket channel, one byte carrying
 * the writing end of a pipe.  The kernel queues it behind every byte written into that
 * channel before, ends the read at it, and never glues it to a later message, so the byte
 * is the last of its read.  Once everything read so far is written, the helper answers on
 * the pipe (serve_flush_requests). */
enum { MAX_FLUSH_REQUESTS = 8 };
static int flush_requests[MAX_FLUSH_REQUESTS];
static int flush_request_count;

static void take_flush_request(int answer_fd)
{
    if (flush_request_count < MAX_FLUSH_REQUESTS)
        flush_requests[flush_request_count++] = answer_fd;
    else
        close(answer_fd); /* the caller sees EOF early and reports a failed flush */
}

/* The gather window adapts to the writers (docs/benchmarks.md, "Tuning the gather window").
 * Each wakeup costs the helper a few microseconds and a writer a wakeup of its own; a window
 * lets a burst gather so that one round reads many lines.  How long pays depends on how fast
 * the writers are: a slow or starved writer (many actors on few cores) needs a long window to
 * fill a round, a fast one would fill its channel and wait for room while the helper sleeps.
 * So: a round that read little (under 4 KiB) after a window doubles the next one, up to
 * gather_us; a round in which a channel came near its capacity halves it and reads on at
 * once; and after a quiet spell (nothing read for gather_us) the first two rounds are read
 * at once, so that a lone line costs no window at all (gather_before_reading). */
#define GATHER_MIN_US 50
#define ROUND_FEW_BYTES (4 * 1024)
/* A channel is crowded when one round read half of what it holds, or READS_PER_ROUND reads
 * did not empty it.  A pipe holds its size (512 KiB asked, less past the user's pipe quota:
 * asked of the kernel at start).  A socket's send buffer (twice net.core.wmem_max at most:
 * 416 KiB by default) counts each write at its payload plus about 500 B of kernel memory, so
 * it holds about 800 short writes whatever their length (8 KiB of lines of 10 B): counted in
 * lines (a line is a write or two), and in bytes for long ones.  And one socket read returns
 * one writer's bytes at most (credentials end a read), so when the children of an actor
 * interleave, READS_PER_ROUND reads take that many lines. */
#define SOCKET_NEAR_FULL_LINES 128
#define SOCKET_NEAR_FULL_BYTES (64 * 1024)
static size_t pipe_near_full_bytes = 256 * 1024;
static int64_t gather_window_us; /* the next round's window */
static size_t round_bytes;        /* read in this round, all channels together */
static int crowded;               /* a channel came near its capacity, or kept bytes after
                                   * READS_PER_ROUND reads: read on without a window */

/* A dying mark read but not yet taken: its channel's read stopped at it (read_ready). */
static int mark_pid;
static char mark_cause;

/* Read what a channel has; returns 0 at EOF, 1 while it stays open.  The owner's pipes
 * are non-blocking and written by the owner alone: their bytes are the owner's. */
static int read_channel(int fd, int stream)
{
    static unsigned char data[READ_CHUNK];
    int from_pipe = stream & FDL_CHANNEL_PIPE;
    size_t got = 0, near_full = from_pipe ? pipe_near_full_bytes : SOCKET_NEAR_FULL_BYTES;
    size_t records_before = records_collected;
    int open = 1;
    for (int round = 0; round < READS_PER_ROUND; round++) {
        int pid = settings.owner, pidfd = -1, passed_fd = -1;
        ssize_t n = from_pipe ? read(fd, data, sizeof data)
                              : receive(fd, data, sizeof data, &pid, &pidfd, &passed_fd);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) /* drained for now: its writers' silence counts from here */
                fdl_assembler_drained(assembler, stream, now_ms());
            break;
        }
        if (n == 0) {
            open = 0;
            break;
        }
        got += (size_t)n;
        char mark = 0;
        if (passed_fd >= 0) { /* a request, not output: flush ('\0') or dying ('D', 'X') */
            if (data[n - 1] == 'D' || data[n - 1] == 'X') {
                close(passed_fd);
                mark = (char)data[n - 1];
            } else {
                take_flush_request(passed_fd);
            }
            n--;
        }
        if (from_pipe)
            fdl_assembler_feed(assembler, pid, stream, data, (size_t)n, now_ms());
        else if (n > 0)
            feed_socket_chunk(pid, pidfd, stream, data, (size_t)n);
        else if (pidfd >= 0)
            close(pidfd);
        if (mark != 0 && mark_cause == 0) {
            mark_pid = pid;
            mark_cause = mark;
            break; /* what follows the mark waits until the other channels are read */
        }
        if (round == READS_PER_ROUND - 1)
            crowded = 1; /* bytes may be left: the other channels' turn first */
    }
    round_bytes += got;
    crowded |= got >= near_full ||
               (!from_pipe && records_collected - records_before >= SOCKET_NEAR_FULL_LINES);
    return open;
}

static void on_sigterm(int signal_number)
{
    (void)signal_number;
    stop_requested = 1;
}

/* Say a status line (READY, ERROR ..., EXIT ...) on the status pipe, and on stderr too:
 * /dev/null, unless SKYRL_FDLOG_DEBUG=1 keeps it in a file next to the log. */
__attribute__((format(printf, 1, 2))) static void report(const char *format, ...)
{
    va_list arguments, again;
    va_start(arguments, format);
    va_copy(again, arguments);
    vdprintf(STATUS_FD, format, arguments);
    dprintf(2, "skyrl-fdlog-helper %d: ", (int)getpid());
    vdprintf(2, format, again);
    va_end(again);
    va_end(arguments);
}

/* A whole decimal number, and nothing else. */
static int parse_number(const char *text, long long *number)
{
    char *end;
    errno = 0;
    *number = strtoll(text, &end, 10);
    return end != text && *end == '\0' && errno == 0 ? 0 : -1;
}

/* parse_settings keeps one bit per setting. */
_Static_assert(FDL_HELPER_SETTING_COUNT <= 32, "settings.h: more rows than bits in `given`");

/* Read one "name=value" into settings; 0, or -1 when it is no setting or its value is not
 * of the setting's kind (or does not fit its type). */
static int parse_setting(char *argument, unsigned *given)
{
    char *value = strchr(argument, '=');
    if (value == NULL)
        return -1;
    size_t key = (size_t)(value++ - argument);
    long long number;
    unsigned row = 0;
#define PARSE_TEXT(field) (settings.field = value, 0)
#define PARSE_NUMBER(field)                                                                   \
    (parse_number(value, &number) != 0 || (settings.field = number) != number ? -1 : 0)
#define PARSE(type, field, kind)                                                              \
    if (key == sizeof #field - 1 && strncmp(argument, #field, key) == 0) {                    \
        *given |= 1u << row;                                                                  \
        return PARSE_##kind(field);                                                           \
    }                                                                                         \
    row++;
    FDL_HELPER_SETTINGS(PARSE)
#undef PARSE
#undef PARSE_NUMBER
#undef PARSE_TEXT
    return -1;
}

/* Every setting must be given, once or more (the last wins); defaults are the caller's. On
 * failure, says which argument is wrong or missing on the status pipe. */
static int parse_settings(int argc, char **argv)
{
    unsigned given = 0, row = 0;
    for (int i = 1; i < argc; i++) {
        if (parse_setting(argv[i], &given) != 0) {
            report("ERROR bad argument '%s' to skyrl-fdlog-helper\n", argv[i]);
            return -1;
        }
    }
#define REQUIRE(type, field, kind)                                                            \
    if (!(given & 1u << row)) {                                                               \
        report("ERROR missing argument %s= to skyrl-fdlog-helper\n", #field);                 \
        return -1;                                                                            \
    }                                                                                         \
    row++;
    FDL_HELPER_SETTINGS(REQUIRE)
#undef REQUIRE
    return 0;
}

/* Close fds first to last (~0U: every fd from first on). */
static void close_from(unsigned first, unsigned last)
{
#ifdef SYS_close_range
    if (syscall(SYS_close_range, first, last, 0) == 0)
        return;
#endif
    struct rlimit limit;
    unsigned top = getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < 65536
                       ? (unsigned)limit.rlim_cur : 65536;
    for (unsigned fd = first; fd <= last && fd < top; fd++)
        close((int)fd);
}

/* Leave the actor's session and process tree, and drop every fd not ours: fds 7 and 8
 * are ours only when the owner's pipes were handed over.  The working directory becomes
 * "/", so that a helper outliving the actor does not keep the actor's directory's
 * filesystem busy (umount fails with EBUSY). */
static pid_t detach(void)
{
    /* Our pid before the fork, not getppid() after it: by then the parent may have exited
     * and getppid() already names whoever adopted us. */
    pid_t intermediate = getpid();
    pid_t child = fork();
    if (child < 0) {
        report("ERROR fork: %s\n", strerror(errno));
        _exit(1);
    }
    if (child > 0)
        _exit(0);
    setsid();
    if (chdir("/") != 0) {
        report("ERROR chdir /: %s\n", strerror(errno));
        _exit(1);
    }
    int first_unused = settings.owner > 0 ? PIPE_ERR_FD + 1 : STATUS_FD + 1;
    if (settings.surface) { /* fd 9 is ours, 7 and 8 perhaps not */
        close_from(first_unused, SURFACE_FD - 1);
        first_unused = SURFACE_FD + 1;
    }
    close_from(first_unused, ~0U);
    return intermediate;
}

/* With RAY_kill_child_processes_on_worker_exit_with_raylet_subreaper=true the raylet is a
 * child subreaper: the helper, orphaned on purpose by detach(), becomes its child, and Ray
 * 2.60 kills children it did not start about every 10 s.  Each time the watchdog starts a
 * new helper (its note says lines it held may be lost).  The helper cannot leave the
 * raylet's care, so it says once why it will die. */
static void note_subreaper(pid_t intermediate)
{
    const char *flag = getenv("RAY_kill_child_processes_on_worker_exit_with_raylet_subreaper");
    if (flag == NULL || (strcmp(flag, "1") != 0 && strcasecmp(flag, "true") != 0))
        return;
    for (int waited = 0; getppid() == intermediate && waited < 100; waited++) {
        struct timespec pause = {0, 1000000L}; /* until the intermediate process is gone */
        nanosleep(&pause, NULL);
    }
    pid_t parent = getppid();
    if (parent == 1 || parent == intermediate)
        return; /* adopted by init: no subreaper between */
    char text[400];
    snprintf(text, sizeof text,
             "log helper %d was adopted by pid %d, a child subreaper "
             "(RAY_kill_child_processes_on_worker_exit_with_raylet_subreaper=%s): Ray kills such "
             "processes about every 10 s; each time a new helper takes over and lines the "
             "killed one held unwritten may be lost; unset the variable to keep the helper",
             (int)getpid(), (int)parent, flag);
    fdl_assembler_note(assembler, getpid(), text, now_ms());
}

/* A path relative to the actor's working directory, made absolute before leaving it. */
static const char *absolute(const char *path)
{
    static char joined[8192];
    char directory[4096];
    if (path[0] == '/' || getcwd(directory, sizeof directory) == NULL)
        return path;
    snprintf(joined, sizeof joined, "%s/%s", directory, path);
    return joined;
}

static void install_signals(void)
{
    struct sigaction action = {0};
    action.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &action, NULL);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGHUP, &action, NULL);
    /* Past RLIMIT_FSIZE a write fails with EFBIG instead, which log_writer.c counts. */
    sigaction(SIGXFSZ, &action, NULL);
    action.sa_handler = on_sigterm; /* no SA_RESTART: poll returns at once */
    sigaction(SIGTERM, &action, NULL);
}

static int any_line_pending(void)
{
    for (int i = 0; i < FDL_SLOT_COUNT; i++)
        if (assembler->slots[i].stream != 0)
            return 1;
    return 0;
}

/* How often unfinished lines are checked for the idle flush. */
static int tick_interval_ms(void)
{
    return settings.idle_ms / 4 > 10 ? settings.idle_ms / 4 : 10;
}

static int poll_timeout(void)
{
    /* Held-back error lines are counted on the terminal when their window ends. */
    return any_line_pending() || surface_held_back > 0 || (dying && !last_words_said)
               ? tick_interval_ms() : -1;
}

/* The owner's pipes come first in each round: of a Python line and a C line the owner wrote
 * within one gather window, the Python one comes first in the log (docs/format.md, "Order"),
 * whichever was written first. */
static const int streams[CHANNEL_COUNT] = {FDL_STREAM_OUT | FDL_CHANNEL_PIPE,
                                           FDL_STREAM_ERR | FDL_CHANNEL_PIPE, FDL_STREAM_OUT,
                                           FDL_STREAM_ERR};

/* Read channel i; returns 1 if it reached EOF (and is closed now). */
static int read_one(struct pollfd *channels, int i)
{
    if (read_channel(channels[i].fd, streams[i]) != 0)
        return 0;
    fdl_assembler_close_stream(assembler, streams[i], now_ms());
    close(channels[i].fd);
    channels[i].fd = -1;
    return 1;
}

static int drain_channels(struct pollfd *channels);

/* A dying mark arrived on channel i.  What the dying process wrote into its other channels
 * (its Python pipes above all) it wrote before it sent the mark, but poll may have seen
 * only the mark's channel ready, or the reads may have reached the mark first: read the
 * others out before the records start to count as after the mark.  Returns how many of
 * them reached EOF. */
static int take_mark(struct pollfd *channels, int i)
{
    int pid = mark_pid, fd = channels[i].fd;
    char cause = mark_cause;
    mark_cause = 0;
    channels[i].fd = -1; /* poll skips it: what follows the mark stays where it is */
    int ended = drain_channels(channels);
    channels[i].fd = fd;
    note_dying(pid, cause);
    return ended;
}

/* Read the channels poll (returning at polled_ms) found ready; returns how many reached
 * EOF (and are closed now).  One found not ready was empty at polled_ms. */
static int read_ready(struct pollfd *channels, int64_t polled_ms)
{
    int ended = 0;
    for (int i = 0; i < CHANNEL_COUNT; i++) {
        if (channels[i].fd < 0)
            continue;
        if (!(channels[i].revents & (POLLIN | POLLHUP | POLLERR))) {
            fdl_assembler_drained(assembler, streams[i], polled_ms);
            continue;
        }
        ended += read_one(channels, i);
        if (mark_cause != 0)
            ended += take_mark(channels, i);
    }
    return ended;
}

/* Before a round's reads: wait for the window, except in the first two rounds after a quiet
 * spell (nothing read for gather_us, the longest window: measured against the current one, a
 * window shrunk by a burst would see every later gap as quiet and never grow back) or after
 * a round that found a channel crowded.
 * Two, not one: a writer's line on one channel is often followed at once by one on its other
 * channel (a print() and a C write); a window opened for that second one would take in the
 * writer's next line too, and the pipe's is read first (the order of `streams`). */
static int64_t last_read_us;
static int rounds_at_once;

/* Returns whether it waited for a window. */
static int gather_before_reading(void)
{
    int64_t now = clock_us(CLOCK_MONOTONIC);
    int waited = 0;
    if (now - last_read_us >= settings.gather_us)
        rounds_at_once = 2;
    if (gather_window_us > 0 && !crowded && rounds_at_once == 0) {
        struct timespec gather = {gather_window_us / 1000000, gather_window_us % 1000000 * 1000L};
        nanosleep(&gather, NULL);
        waited = 1;
    }
    if (rounds_at_once > 0)
        rounds_at_once--;
    crowded = 0;
    round_bytes = 0;
    return waited;
}

/* After a round's reads: the next window, as the comment at GATHER_MIN_US says. */
static void adapt_gather(int waited_a_window)
{
    if (round_bytes == 0)
        return;
    last_read_us = clock_us(CLOCK_MONOTONIC);
    int64_t shortest = settings.gather_us < GATHER_MIN_US ? settings.gather_us : GATHER_MIN_US;
    if (crowded)
        gather_window_us = gather_window_us / 2 > shortest ? gather_window_us / 2 : shortest;
    else if (waited_a_window && round_bytes < ROUND_FEW_BYTES)
        gather_window_us = gather_window_us * 2 < settings.gather_us ? gather_window_us * 2
                                                                      : settings.gather_us;
}

/* Read until the channels are empty, in a bounded number of rounds (a writer that never
 * stops cannot hold the caller forever); returns how many channels ended. */
static int drain_channels(struct pollfd *channels)
{
    int ended = 0;
    for (int round = 0; round < FLUSH_DRAIN_ROUNDS && poll(channels, CHANNEL_COUNT, 0) > 0; round++)
        ended += read_ready(channels, now_ms());
    return ended;
}

static void answer_flush_requests(int done)
{
    for (int i = 0; i < flush_request_count; i++) {
        if (done)
            (void)!write(flush_requests[i], "F", 1);
        close(flush_requests[i]); /* without an answer: the caller's flush() returns False */
    }
    flush_request_count = 0;
}

/* Everything written into the channels before the requests was read by now or waits in
 * them: read them out, write every unfinished line as it stands (a `+` fragment), wait for
 * the writing thread, then answer.  Returns how many channels ended. */
static int serve_flush_requests(struct pollfd *channels)
{
    int ended = drain_channels(channels);
    fdl_assembler_tick(assembler, now_ms(), 0);
    answer_flush_requests(fdl_writer_sync(FLUSH_WAIT_MS) == 0);
    return ended;
}

int main(int argc, char **argv)
{
    if (parse_settings(argc, argv) != 0)
        return 2;
    settings.path = absolute(settings.path);
    gather_window_us = settings.gather_us;
    pid_t intermediate = detach();
    install_signals();
    /* A pipe has no MSG_DONTWAIT: its reads must not block the other channels. */
    for (int fd = PIPE_OUT_FD; settings.owner > 0 && fd <= PIPE_ERR_FD; fd++) {
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        int size = fcntl(fd, F_GETPIPE_SZ);
        if (size > 0 && (size_t)size / 2 < pipe_near_full_bytes)
            pipe_near_full_bytes = (size_t)size / 2;
    }
    struct fdl_writer_settings writer = {.fd = LOG_FD, .path = settings.path, .name = settings.name,
                                         .node = settings.node, .raw = settings.raw,
                                         .lock = settings.lock, .buffer_bytes = settings.buffer_bytes,
                                         .max_bytes = settings.max_bytes};
    assembler = calloc(1, sizeof *assembler);
    if (assembler == NULL || fdl_writer_start(&writer) != 0) {
        report("ERROR cannot allocate the helper's buffers or thread\n");
        return 1;
    }
    fdl_assembler_init(assembler, settings.name, settings.node, settings.raw,
                       settings.snapshot_ms, collect_record, NULL);
    for (int i = 0; i < FDL_SLOT_COUNT; i++)
        writers[i].pidfd = -1;
    assembler->owner = settings.owner;
    report("READY %d\n", (int)getpid());
    note_subreaper(intermediate);
    if (settings.restarted_after > 0) {
        char text[200];
        snprintf(text, sizeof text,
                 "log helper %d ended unexpectedly; restarted as %d; lines it held unwritten "
                 "may be lost", settings.restarted_after, (int)getpid());
        fdl_assembler_note(assembler, getpid(), text, now_ms());
    }

    if (settings.surface)
        watch_owner();
    /* In the order of `streams`: the owner's pipes first; then the owner's pidfd, whose end
     * wakes the helper ("The OOM killer"). */
    struct pollfd channels[CHANNEL_COUNT + 1] = {
        {.fd = settings.owner > 0 ? PIPE_OUT_FD : -1, .events = POLLIN},
        {.fd = settings.owner > 0 ? PIPE_ERR_FD : -1, .events = POLLIN},
        {.fd = OUT_FD, .events = POLLIN},
        {.fd = ERR_FD, .events = POLLIN},
        {.fd = owner_pidfd, .events = POLLIN}};
    int open_channels = 0;
    for (int i = 0; i < CHANNEL_COUNT; i++)
        open_channels += channels[i].fd >= 0;
    int64_t next_tick = 0;
    while (open_channels > 0 && !stop_requested) {
        int ready = poll(channels, CHANNEL_COUNT + 1, poll_timeout());
        int64_t polled = now_ms();
        if (ready < 0 && errno != EINTR) {
            /* Out of kernel memory for the poll table: no reason to stop reading (writers
             * would fill the channels and wait forever); try again shortly. */
            struct timespec pause = {0, POLL_RETRY_MS * 1000000L};
            nanosleep(&pause, NULL);
            continue;
        }
        int waited_a_window = ready > 0 && gather_before_reading();
        /* Before reading: a writer that exited before this round's bytes were written is
         * seen exited now, so that its pid's next bytes come with their writer's pidfd. */
        watch_writers();
        open_channels -= read_ready(channels, polled);
        if (ready > 0)
            adapt_gather(waited_a_window);
        if (flush_request_count > 0)
            open_channels -= serve_flush_requests(channels);
        if (owner_pidfd >= 0 && channels[CHANNEL_COUNT].revents != 0) {
            owner_ended();
            channels[CHANNEL_COUNT].fd = -1;
        }
        if (dying && !last_words_said && dying_is_gone()) {
            /* All it wrote is in the channels now: read that first. */
            open_channels -= drain_channels(channels);
            say_last_words();
        }
        int64_t now = now_ms();
        if (now >= next_tick) { /* idle lines need no attention on every round */
            fdl_assembler_tick(assembler, now, settings.idle_ms);
            next_tick = now + tick_interval_ms();
            if (settings.surface)
                surface_window(now);
        }
        fdl_writer_flush();
    }
    /* SIGTERM: take what is already readable, then finish every line as it stands.  A mark
     * can only come on the err channel, read last: the others are read by then. */
    for (int i = 0; i < CHANNEL_COUNT; i++) {
        if (channels[i].fd >= 0 && read_channel(channels[i].fd, streams[i]) && mark_cause != 0) {
            note_dying(mark_pid, mark_cause);
            mark_cause = 0;
            read_channel(channels[i].fd, streams[i]); /* what followed the mark */
        }
        fdl_assembler_close_stream(assembler, streams[i], now_ms());
    }
    if (owner_pidfd >= 0 && !stop_requested)
        await_owner();
    if (dying && !last_words_said) /* every writer has gone: the dying one too */
        say_last_words();
    answer_flush_requests(fdl_writer_finish(GIVE_UP_AFTER_MS) == 0);
    if (settings.surface)
        surface_window(INT64_MAX / 2); /* the count of a window cut short */
    report("EXIT %s\n", stop_requested ? "term" : "eof");
    return 0;
}
