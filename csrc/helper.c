/*
 * helper.c - the skyrl-fdlog-helper executable: reads the capture channels,
 * assembles lines per writer and appends records to the log.
 *
 * Started by fdl_helper_start (helper_start.c) with the log on fd 3, the out
 * and err channels on 4 and 5 and the status pipe on 6.  It exits once every
 * writer has closed the channels (orphaned children included) and all
 * records are written, or after SIGTERM once what is readable is written.
 *
 * Writing: records are packed into batches of at most PIPE_BUF bytes, each
 * one write(2) on an O_APPEND fd, so no record is ever torn by another
 * writer of the file.  With lock=1 (network filesystems) each run of writes
 * holds a whole-file fcntl lock and ends with fdatasync: the lock makes an
 * NFS client revalidate the file size, the sync pushes the data out before
 * another machine appends.  When writing fails (disk full, EIO) batches wait
 * in a bounded queue; beyond it records are dropped and counted, and one
 * "dropped" record says so once writing works again.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

enum { LOG_FD = 3, OUT_FD = 4, ERR_FD = 5, STATUS_FD = 6, FIRST_UNUSED_FD = 7 };

#define READ_CHUNK (64 * 1024)
#define READS_PER_ROUND 64        /* per channel, so one busy writer cannot starve the other */
#define BATCHES_PER_LOCK 64       /* bound the time one lock is held */
#define RETRY_MIN_MS 50
#define RETRY_MAX_MS 2000
#define GIVE_UP_AFTER_MS 10000    /* at exit, how long to keep retrying a failing log */

struct settings {
    const char *name, *node, *path;
    int raw, lock, idle_ms, snapshot_ms, gather_us, restarted_after;
    long buffer_bytes;
};

struct batch {
    size_t length, written;
    int records;
    char data[FDL_RECORD_MAX];
};

/* Batches waiting to be written: a ring of fixed size, so memory is bounded. */
struct queue {
    struct batch *ring;
    size_t capacity, head, count;
    struct batch open;            /* being filled */
    long dropped_records, dropped_bytes;
    int drop_error;               /* errno of the failure that made the queue fill */
    int last_error;
    int64_t retry_at_ms;
    int retry_ms;
};

static struct settings settings;
static struct queue queue;
static struct fdl_assembler *assembler;
static volatile sig_atomic_t stop_requested;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void push_batch(const struct batch *batch)
{
    if (queue.count == queue.capacity) {
        queue.dropped_records += batch->records;
        queue.dropped_bytes += (long)batch->length;
        queue.drop_error = queue.last_error;
        return;
    }
    struct batch *slot = &queue.ring[(queue.head + queue.count) % queue.capacity];
    memcpy(slot, batch, offsetof(struct batch, data) + batch->length);
    slot->written = 0;
    queue.count++;
}

static void note_drops(void)
{
    char text[256];
    snprintf(text, sizeof text,
             "dropped %ld records (%ld bytes) while %s could not be written: %s",
             queue.dropped_records, queue.dropped_bytes, settings.path,
             strerror(queue.drop_error ? queue.drop_error : EIO));
    queue.dropped_records = queue.dropped_bytes = 0;
    struct fdl_record_format format;
    fdl_format_init(&format, settings.name, settings.node, settings.raw);
    char label[FDL_PREFIX_MAX];
    size_t label_length = fdl_format_label(&format, label, getpid(), FDL_STREAM_META);
    struct batch marker = {.records = 1};
    marker.length = fdl_format_record(&format, marker.data, now_ms(), label, label_length,
                                      FDL_MARK_LINE, (const unsigned char *)text, strlen(text));
    push_batch(&marker);
}

/* Move the batch being filled into the queue. */
static void seal_batch(void)
{
    if (queue.open.length == 0)
        return;
    if (queue.dropped_records > 0 && queue.count + 1 < queue.capacity)
        note_drops();
    push_batch(&queue.open);
    queue.open.length = 0;
    queue.open.records = 0;
}

static void collect_record(void *context, const char *record, size_t length, char mark)
{
    (void)context;
    (void)mark;
    if (queue.open.length + length > FDL_RECORD_MAX)
        seal_batch();
    memcpy(queue.open.data + queue.open.length, record, length);
    queue.open.length += length;
    queue.open.records++;
}

static int lock_log(short type)
{
    struct flock lock = {.l_type = type, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    while (fcntl(LOG_FD, F_SETLKW, &lock) != 0)
        if (errno != EINTR)
            return -errno;
    return 0;
}

/* Write queued batches; returns 0 or the errno that stopped it. */
static int write_queue(void)
{
    int error = 0;
    if (settings.lock && (error = -lock_log(F_WRLCK)) != 0)
        return error;
    for (int n = 0; queue.count > 0 && n < BATCHES_PER_LOCK; n++) {
        struct batch *batch = &queue.ring[queue.head];
        ssize_t wrote = write(LOG_FD, batch->data + batch->written, batch->length - batch->written);
        if (wrote < 0) {
            if (errno == EINTR) {
                n--;
                continue;
            }
            error = errno;
            break;
        }
        /* A short write (disk filling up) leaves the rest for the next write. */
        batch->written += (size_t)wrote;
        if (batch->written == batch->length) {
            queue.head = (queue.head + 1) % queue.capacity;
            queue.count--;
        }
    }
    if (settings.lock) {
        if (error == 0 && fdatasync(LOG_FD) != 0 && errno != EINVAL)
            error = errno;
        lock_log(F_UNLCK);
    }
    return error;
}

static void flush_queue(void)
{
    seal_batch();
    while (queue.count > 0) {
        int64_t now = monotonic_ms();
        if (now < queue.retry_at_ms)
            return;
        int error = write_queue();
        if (error == 0) {
            queue.retry_ms = RETRY_MIN_MS;
            queue.last_error = 0;
            continue;
        }
        queue.last_error = error;
        queue.retry_at_ms = now + queue.retry_ms;
        queue.retry_ms = queue.retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : queue.retry_ms * 2;
        return;
    }
}

/* Read what a channel has; returns 0 at EOF, 1 while it stays open. */
static int read_channel(int fd, int stream)
{
    static unsigned char data[READ_CHUNK];
    char control[CMSG_SPACE(sizeof(struct ucred))];
    for (int round = 0; round < READS_PER_ROUND; round++) {
        struct iovec iov = {.iov_base = data, .iov_len = sizeof data};
        struct msghdr message = {.msg_iov = &iov, .msg_iovlen = 1,
                                 .msg_control = control, .msg_controllen = sizeof control};
        ssize_t n = recvmsg(fd, &message, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return 1; /* EAGAIN: drained for now */
        }
        if (n == 0)
            return 0;
        int pid = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&message); c != NULL; c = CMSG_NXTHDR(&message, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS)
                pid = ((struct ucred *)(void *)CMSG_DATA(c))->pid;
        fdl_assembler_feed(assembler, pid, stream, data, (size_t)n, now_ms());
    }
    return 1;
}

static void on_sigterm(int signal_number)
{
    (void)signal_number;
    stop_requested = 1;
}

static int parse_settings(int argc, char **argv)
{
    settings = (struct settings){.name = "-", .node = "-", .path = "?", .idle_ms = 1000,
                                 .snapshot_ms = 5000, .buffer_bytes = 4 << 20};
    for (int i = 1; i < argc; i++) {
        char *value = strchr(argv[i], '=');
        if (value == NULL)
            return -1;
        size_t key = (size_t)(value++ - argv[i]);
#define KEY(k) (key == sizeof(k) - 1 && strncmp(argv[i], k, key) == 0)
        if (KEY("name")) settings.name = value;
        else if (KEY("node")) settings.node = value;
        else if (KEY("path")) settings.path = value;
        else if (KEY("raw")) settings.raw = atoi(value);
        else if (KEY("lock")) settings.lock = atoi(value);
        else if (KEY("idle_ms")) settings.idle_ms = atoi(value);
        else if (KEY("snapshot_ms")) settings.snapshot_ms = atoi(value);
        else if (KEY("gather_us")) settings.gather_us = atoi(value);
        else if (KEY("buffer_bytes")) settings.buffer_bytes = atol(value);
        else if (KEY("restarted_after")) settings.restarted_after = atoi(value);
        else return -1;
#undef KEY
    }
    return 0;
}

/* Leave the actor's session and process tree, and drop every fd not ours. */
static void detach(void)
{
    pid_t child = fork();
    if (child < 0) {
        dprintf(STATUS_FD, "ERROR fork: %s\n", strerror(errno));
        _exit(1);
    }
    if (child > 0)
        _exit(0);
    setsid();
#ifdef SYS_close_range
    if (syscall(SYS_close_range, FIRST_UNUSED_FD, ~0U, 0) == 0)
        return;
#endif
    struct rlimit limit;
    long top = getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < 65536 ? (long)limit.rlim_cur
                                                                               : 65536;
    for (long fd = FIRST_UNUSED_FD; fd < top; fd++)
        close((int)fd);
}

static void install_signals(void)
{
    struct sigaction action = {0};
    action.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &action, NULL);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGHUP, &action, NULL);
    action.sa_handler = on_sigterm; /* no SA_RESTART: poll returns at once */
    sigaction(SIGTERM, &action, NULL);
}

static int any_line_pending(void)
{
    for (int i = 0; i < FDL_SLOT_COUNT; i++)
        if (assembler->slots[i].pid != 0)
            return 1;
    return 0;
}

static int poll_timeout(void)
{
    if (queue.count > 0) {
        int64_t wait = queue.retry_at_ms - monotonic_ms();
        return wait < 0 ? 0 : (int)wait;
    }
    if (any_line_pending())
        return settings.idle_ms / 4 > 10 ? settings.idle_ms / 4 : 10;
    return -1;
}

int main(int argc, char **argv)
{
    if (parse_settings(argc, argv) != 0) {
        dprintf(STATUS_FD, "ERROR bad arguments\n");
        return 2;
    }
    detach();
    install_signals();
    queue.capacity = (size_t)(settings.buffer_bytes / (long)sizeof(struct batch));
    if (queue.capacity < 2)
        queue.capacity = 2;
    queue.ring = malloc(queue.capacity * sizeof(struct batch));
    queue.retry_ms = RETRY_MIN_MS;
    assembler = calloc(1, sizeof *assembler);
    if (queue.ring == NULL || assembler == NULL) {
        dprintf(STATUS_FD, "ERROR out of memory\n");
        return 1;
    }
    fdl_assembler_init(assembler, settings.name, settings.node, settings.raw,
                       settings.snapshot_ms, collect_record, NULL);
    dprintf(STATUS_FD, "READY %d\n", (int)getpid());
    if (settings.restarted_after > 0) {
        char text[200];
        snprintf(text, sizeof text,
                 "log helper %d ended unexpectedly; restarted as %d; lines it held unwritten "
                 "may be lost", settings.restarted_after, (int)getpid());
        fdl_assembler_note(assembler, getpid(), text, now_ms());
    }

    struct pollfd channels[2] = {{.fd = OUT_FD, .events = POLLIN}, {.fd = ERR_FD, .events = POLLIN}};
    const int streams[2] = {FDL_STREAM_OUT, FDL_STREAM_ERR};
    int open_channels = 2;
    while (open_channels > 0 && !stop_requested) {
        int ready = poll(channels, 2, poll_timeout());
        if (ready < 0 && errno != EINTR)
            break;
        if (ready > 0 && settings.gather_us > 0) {
            /* Let a burst gather while nobody waits on the sockets: writers skip the wakeup,
             * reads come back bigger and batches fuller.  Costs gather_us of latency. */
            struct timespec gather = {0, settings.gather_us * 1000L};
            nanosleep(&gather, NULL);
        }
        for (int i = 0; i < 2; i++) {
            if (channels[i].fd < 0 || !(channels[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            if (read_channel(channels[i].fd, streams[i]) == 0) {
                fdl_assembler_close_stream(assembler, streams[i], now_ms());
                close(channels[i].fd);
                channels[i].fd = -1;
                open_channels--;
            }
        }
        fdl_assembler_tick(assembler, now_ms(), settings.idle_ms);
        flush_queue();
    }
    /* SIGTERM: take what is already readable, then finish every line as it stands. */
    for (int i = 0; i < 2; i++)
        if (channels[i].fd >= 0)
            read_channel(channels[i].fd, streams[i]);
    fdl_assembler_close_stream(assembler, FDL_STREAM_OUT, now_ms());
    fdl_assembler_close_stream(assembler, FDL_STREAM_ERR, now_ms());
    int64_t give_up_at = monotonic_ms() + GIVE_UP_AFTER_MS;
    for (flush_queue(); queue.count > 0 && monotonic_ms() < give_up_at; flush_queue())
        poll(NULL, 0, poll_timeout());
    dprintf(STATUS_FD, "EXIT %s\n", stop_requested ? "term" : "eof");
    return 0;
}
