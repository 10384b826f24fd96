/*
 * log_writer.c - the helper's writing side: a bounded queue of batches and
 * a thread that appends them to the log.
 *
 * Records are packed into batches of at most PIPE_BUF bytes, each one
 * write(2) on an O_APPEND fd, so no record is ever torn by another writer of
 * the file.  On ext2/3/4 and tmpfs, whose O_APPEND write holds the inode lock
 * for the whole write, the queued batches go out up to RUN_BYTES at a time in
 * one writev(2) (tests/test_core_large_appends.py finds no torn record in many
 * concurrent such appends on each): for long lines the count of writes, not
 * the bytes, was most of the helper's CPU.  With lock=1 (network filesystems)
 * each run of writes holds a whole-file fcntl lock and ends with fdatasync:
 * the lock makes an NFS client revalidate the file size, the sync pushes the
 * data out before another machine appends (GlusterFS's write-behind loses
 * appends without it).
 *
 * Writing runs in its own thread so that a log filesystem that hangs or
 * fails (disk full, EIO) never stops the reading side: the actor's writes
 * keep draining into the queue.  A full queue in front of a healthy but
 * slower log makes the reading side wait (the actor is slowed, nothing is
 * lost); in front of a failing log, or one that made no progress for
 * STALL_MS, records are dropped and counted instead, and one "dropped"
 * record says so once there is room again.
 * Once a second, and once at the start (a restarted helper is handed the fd
 * its actor opened, maybe before a logrotate), the thread checks that the
 * path still names the open file; after logrotate moved or removed it, the
 * path is opened anew.
 *
 * Timing (retries, stalls, the give-up at exit) uses the monotonic clock, so
 * that a step of the wall clock neither stalls the writer nor drops what is
 * queued at exit; the wall clock only stamps records.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "fdlog.h"
#include "internal.h"

#define BATCHES_PER_LOCK 64   /* bound the time one lock is held */
#define RETRY_MIN_MS 50
#define RETRY_MAX_MS 2000
#define REOPEN_CHECK_MS 1000
#define STALL_MS 1000         /* a full queue that long without progress: the log hangs */
#define RUN_BYTES (64 * 1024) /* one writev of whole batches, where appends stay whole */
#define RUN_BATCHES 64

struct batch {
    size_t length;
    size_t written;               /* a write cut short by a full disk resumes here */
    int records;
    int note;                     /* skyrl_fdlog's own: exempt from the cap */
    char data[FDL_RECORD_MAX];
};

static struct {
    struct fdl_writer_settings settings;
    pthread_mutex_t mutex;
    pthread_cond_t wake;          /* to the writing thread: batches are waiting */
    pthread_cond_t room;          /* to the reading side: a batch was written, or the thread
                                   * exited; waited on with the monotonic clock */
    pthread_t thread;
    struct batch **ring;          /* capacity batches; head..head+count-1 wait to be written,
                                   * the others are free */
    size_t capacity, head, count;
    struct batch *open;           /* being filled by the reading side */
    struct batch *note;           /* the "dropped" record being queued */
    long dropped_records, dropped_bytes;
    long cut_records;             /* of the dropped, records a failed write left cut short */
    int last_error;               /* errno of the last failed write, 0 after a success */
    int stalled;                  /* the log let the reading side wait STALL_MS in vain */
    int drop_error;
    int finishing;
    int exited;                   /* the thread has written all it could and returned */
    rlim_t size_limit;            /* RLIMIT_FSIZE, see check_size_limit */
    int size_limit_noted;         /* the note saying the open file reached it is written */
    int whole_appends;            /* the log's filesystem keeps a writev of RUN_BYTES whole */
    long capped_records, capped_bytes; /* dropped over settings.max_bytes, not yet reported */
} w = {.mutex = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static int64_t clock_ms(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The monotonic time ms from now, as pthread_cond_timedwait on `room` wants it. */
static struct timespec monotonic_after(long ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += ms % 1000 * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    return until;
}

/* One record of skyrl_fdlog's own ('fdlog' stream) into batch. */
static void format_note(struct batch *batch, const char *text)
{
    struct fdl_record_format format;
    fdl_format_init(&format, w.settings.name, w.settings.node, w.settings.raw);
    char label[FDL_PREFIX_MAX];
    size_t label_length = fdl_format_label(&format, label, getpid(), FDL_STREAM_META);
    batch->records = 1;
    batch->written = 0;
    batch->note = 1;
    batch->length = fdl_format_record(&format, batch->data, clock_ms(CLOCK_REALTIME), label,
                                      label_length, FDL_MARK_LINE, (const unsigned char *)text,
                                      strlen(text));
}

/* A batch to fill with output: it may have been anything before, a note too. */
static void empty(struct batch *batch)
{
    batch->length = 0;
    batch->records = 0;
    batch->note = 0;
}

/* Called with the mutex held: wait for room while the log keeps up. */
static void wait_for_room_locked(void)
{
    if (w.count < w.capacity)
        return; /* the usual case, on every batch: no clock read */
    int64_t deadline = clock_ms(CLOCK_MONOTONIC) + STALL_MS;
    while (w.count == w.capacity && w.last_error == 0 && !w.stalled) {
        if (clock_ms(CLOCK_MONOTONIC) >= deadline) {
            w.stalled = 1; /* hung: drop from now on rather than block the actor */
            break;
        }
        struct timespec until = monotonic_after(100);
        pthread_cond_timedwait(&w.room, &w.mutex, &until);
    }
}

/* Called with the mutex held.  Queues *batch by exchanging it for the free batch at the
 * ring's tail (no copy): *batch is then that one, or still the same when it was dropped. */
static void push_locked(struct batch **batch)
{
    wait_for_room_locked();
    if (w.count == w.capacity) {
        w.dropped_records += (*batch)->records;
        w.dropped_bytes += (long)(*batch)->length;
        w.drop_error = w.last_error != 0 ? w.last_error : ETIMEDOUT;
        return;
    }
    struct batch **tail = &w.ring[(w.head + w.count) % w.capacity], *free_batch = *tail;
    *tail = *batch;
    (*tail)->written = 0;
    *batch = free_batch;
    w.count++;
}

/* Called with the mutex held: the "dropped" record, in front of what follows the drops. */
static void queue_drop_note_locked(void)
{
    char cause[256], cut[96] = "";
    if (w.drop_error == ETIMEDOUT)
        snprintf(cause, sizeof cause, "made no progress for over a second");
    else
        snprintf(cause, sizeof cause, "could not be written: %s", strerror(w.drop_error));
    if (w.cut_records > 0)
        snprintf(cut, sizeof cut, "; %ld of them were cut short by the failed write and end early",
                 w.cut_records);
    char text[768];
    snprintf(text, sizeof text, "dropped %ld records (%ld bytes) while %s %s%s", w.dropped_records,
             w.dropped_bytes, w.settings.path, cause, cut);
    format_note(w.note, text);
    w.dropped_records = w.dropped_bytes = w.cut_records = 0;
    w.drop_error = 0;
    push_locked(&w.note);
}

void fdl_writer_flush(void)
{
    if (w.open->length == 0)
        return;
    pthread_mutex_lock(&w.mutex);
    if (w.dropped_records > 0 && w.count + 2 <= w.capacity)
        queue_drop_note_locked();
    push_locked(&w.open);
    pthread_cond_signal(&w.wake);
    pthread_mutex_unlock(&w.mutex);
    empty(w.open);
}

void fdl_writer_add(const char *record, size_t length)
{
    if (w.open->length + length > FDL_RECORD_MAX)
        fdl_writer_flush();
    memcpy(w.open->data + w.open->length, record, length);
    w.open->length += length;
    w.open->records++;
}

static int lock_log(short type)
{
    struct flock lock = {.l_type = type, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    while (fcntl(w.settings.fd, F_SETLKW, &lock) != 0)
        if (errno != EINTR)
            return errno;
    return 0;
}

/* A write cut short (disk full) left a record torn in the file.  Appending its rest
 * later would glue it to whatever lies there then, so end the torn piece with a
 * newline, count the record as dropped and go on with the next whole one. */
static int skip_torn_record(struct batch *batch)
{
    const char *end = memchr(batch->data + batch->written, '\n', batch->length - batch->written);
    ssize_t wrote = write(w.settings.fd, "\n", 1);
    if (wrote != 1)
        return wrote < 0 ? errno : EIO;
    batch->written = (size_t)(end - batch->data) + 1;
    pthread_mutex_lock(&w.mutex);
    w.dropped_records++;
    w.cut_records++;
    w.dropped_bytes += (long)(end - batch->data);
    w.drop_error = ENOSPC;
    pthread_mutex_unlock(&w.mutex);
    return 0;
}

static int write_batch(struct batch *batch)
{
    while (batch->written < batch->length) {
        if (batch->written > 0 && batch->data[batch->written - 1] != '\n') {
            int error = skip_torn_record(batch);
            if (error != 0)
                return error;
            continue;
        }
        ssize_t wrote = write(w.settings.fd, batch->data + batch->written,
                              batch->length - batch->written);
        if (wrote < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        batch->written += (size_t)wrote;
    }
    return 0;
}

/* One note straight into the file, outside the queue, with the lock and sync a batch gets
 * (on a network filesystem an unlocked append can land on top of another machine's). */
static void write_note_now(const char *text)
{
    struct batch note;
    format_note(&note, text);
    int locked = w.settings.lock && lock_log(F_WRLCK) == 0;
    if (write_batch(&note) == 0 && locked)
        (void)fdatasync(w.settings.fd);
    if (locked)
        lock_log(F_UNLCK);
}

/* The actor's RLIMIT_FSIZE (ulimit -f) is inherited: past it a write fails with EFBIG (the
 * helper ignores SIGXFSZ, which would kill it).  The last record's room below the limit is
 * kept for one note saying so; batches that do not fit are refused with EFBIG and, like
 * records a full disk refused, queued then dropped and counted, the count written once
 * logrotate gives the path a new file. */
static int check_size_limit(const struct batch *batch)
{
    struct stat st;
    if (w.size_limit == RLIM_INFINITY || fstat(w.settings.fd, &st) != 0 ||
        (rlim_t)st.st_size + (batch->length - batch->written) + FDL_RECORD_MAX <= w.size_limit)
        return 0;
    if (!w.size_limit_noted) {
        char text[768];
        snprintf(text, sizeof text,
                 "%s reached the file size limit (RLIMIT_FSIZE, ulimit -f) of %llu bytes; later "
                 "records are dropped and counted until the file is rotated", w.settings.path,
                 (unsigned long long)w.size_limit);
        write_note_now(text);
        w.size_limit_noted = 1;
    }
    return EFBIG;
}

/* settings.max_bytes (redirect(max_bytes=...)): once the file at the path holds that much,
 * output records are dropped where they are, without holding anybody up, and counted; one
 * note says so when the cap is reached and one gives the count when the file is rotated away
 * or the helper ends.  skyrl_fdlog's own notes are exempt.  On a network filesystem the size
 * is read under the lock, so the cap holds across writers as far as their caches agree. */
static int over_cap(const struct batch *batch)
{
    struct stat st;
    if (w.settings.max_bytes <= 0 || fstat(w.settings.fd, &st) != 0 ||
        (long long)st.st_size + (long long)(batch->length - batch->written) <= w.settings.max_bytes)
        return 0;
    if (w.capped_records == 0) {
        char text[768];
        snprintf(text, sizeof text,
                 "%s reached its cap of %lld bytes (max_bytes, SKYRL_FDLOG_MAX_BYTES); later "
                 "records are dropped and counted until the file is rotated", w.settings.path,
                 w.settings.max_bytes);
        write_note_now(text);
    }
    w.capped_records += batch->records;
    w.capped_bytes += (long)(batch->length - batch->written);
    return 1;
}

/* The count of records dropped over the cap, into the file they were kept out of. */
static void report_capped(void)
{
    if (w.capped_records == 0)
        return;
    char text[768];
    snprintf(text, sizeof text, "dropped %ld records (%ld bytes) over the cap of %lld bytes of %s",
             w.capped_records, w.capped_bytes, w.settings.max_bytes, w.settings.path);
    write_note_now(text);
    w.capped_records = w.capped_bytes = 0;
}

static void pop_locked(size_t batches)
{
    w.head = (w.head + batches) % w.capacity;
    w.count -= batches;
    w.stalled = 0;
    pthread_cond_signal(&w.room);
}

/* Can batches go out RUN_BYTES at a time?  Only on a filesystem named above, and without
 * the checks that decide batch by batch whether it may be written (cap, ulimit -f). */
static int runs_allowed(void)
{
    return w.whole_appends && w.settings.max_bytes <= 0 && w.size_limit == RLIM_INFINITY;
}

/* The log's filesystem, read again whenever the fd is (re)opened. */
static void check_filesystem(void)
{
    int facts = fdl_filesystem_facts(w.settings.fd);
    w.whole_appends = !w.settings.lock && facts > 0 && (facts & FDL_FS_KEEPS_APPENDS_WHOLE);
}

/* Write the head of the queue (queued batches, the first not yet begun) with one writev of
 * at most RUN_BYTES and pop what was written; a write cut short leaves its batch begun, for
 * write_batch.  0 or an errno. */
static int write_run(size_t queued)
{
    struct iovec parts[RUN_BATCHES];
    size_t count = 0, total = 0;
    while (count < RUN_BATCHES && count < queued) {
        struct batch *batch = w.ring[(w.head + count) % w.capacity];
        if (count > 0 && total + batch->length > RUN_BYTES)
            break;
        parts[count++] = (struct iovec){.iov_base = batch->data, .iov_len = batch->length};
        total += batch->length;
    }
    ssize_t wrote;
    do
        wrote = writev(w.settings.fd, parts, (int)count);
    while (wrote < 0 && errno == EINTR);
    if (wrote < 0)
        return errno;
    size_t whole = 0, left = (size_t)wrote;
    while (whole < count && left >= parts[whole].iov_len)
        left -= parts[whole++].iov_len;
    if (left > 0)
        w.ring[(w.head + whole) % w.capacity]->written = left;
    pthread_mutex_lock(&w.mutex);
    pop_locked(whole);
    pthread_mutex_unlock(&w.mutex);
    return 0;
}

/* Write up to BATCHES_PER_LOCK batches from the head of the queue; 0 or an errno.
 * Under the lock a batch leaves the queue only once fdatasync has stored it: on a
 * network filesystem a write can "succeed" into a cache that is then lost. */
static int write_some(void)
{
    int error = w.settings.lock ? lock_log(F_WRLCK) : 0;
    size_t unsynced = 0;
    for (int n = 0; error == 0 && n < BATCHES_PER_LOCK; n++) {
        pthread_mutex_lock(&w.mutex);
        size_t queued = w.count - unsynced;
        struct batch *batch = queued > 0 ? w.ring[(w.head + unsynced) % w.capacity] : NULL;
        pthread_mutex_unlock(&w.mutex);
        if (batch == NULL)
            break;
        if (runs_allowed() && batch->written == 0) {
            error = write_run(queued);
            continue;
        }
        /* The reading side only appends behind the head, so the batch is ours to read. */
        error = check_size_limit(batch);
        if (error == 0 && !batch->note && over_cap(batch)) {
            pthread_mutex_lock(&w.mutex);
            pop_locked(1);  /* dropped and counted: nothing to wait for */
            pthread_mutex_unlock(&w.mutex);
            continue;
        }
        if (error == 0)
            error = write_batch(batch);
        if (error == 0 && w.settings.lock) {
            unsynced++;
        } else if (error == 0) {
            pthread_mutex_lock(&w.mutex);
            pop_locked(1);
            pthread_mutex_unlock(&w.mutex);
        }
    }
    if (w.settings.lock) {
        if (error == 0 && fdatasync(w.settings.fd) != 0 && errno != EINVAL)
            error = errno;
        lock_log(F_UNLCK);
        pthread_mutex_lock(&w.mutex);
        if (error == 0) {
            pop_locked(unsynced);
        } else {
            /* Not known to be stored: write them again (a duplicate beats a loss). */
            for (size_t i = 0; i < unsynced; i++)
                w.ring[(w.head + i) % w.capacity]->written = 0;
        }
        pthread_mutex_unlock(&w.mutex);
    }
    return error;
}

/* Open the path anew onto the log's fd and say why in the (new) file. */
static void reopen(const char *why)
{
    struct fdl_open_result result;
    /* The new file gets the mode of the one it replaces: the mode the actor chose, as the
     * umask left it. */
    struct stat old;
    int mode = fstat(w.settings.fd, &old) == 0 ? (int)(old.st_mode & 0777) : 0640;
    int fd = fdl_open_log(w.settings.path, 0, mode, &result);
    if (fd < 0)
        return; /* keep the old fd rather than none; the next check tries again */
    report_capped();
    dup3(fd, w.settings.fd, O_CLOEXEC);
    close(fd);
    check_filesystem();
    w.size_limit_noted = 0;
    char text[512];
    snprintf(text, sizeof text, "%s %s; reopened it", w.settings.path, why);
    write_note_now(text);
}

/* logrotate moved or removed the file, or the fd died with a network filesystem's server. */
static void reopen_if_moved(void)
{
    struct stat open_file, named;
    if (fstat(w.settings.fd, &open_file) != 0) {
        reopen("could not be checked (its server may have restarted)");
        return;
    }
    if (stat(w.settings.path, &named) != 0 || named.st_dev != open_file.st_dev ||
        named.st_ino != open_file.st_ino)
        reopen("was moved or removed");
}

/* Errors after which the open fd may never work again, though the path would. */
static int fd_may_be_dead(int error)
{
    return error == ENOTCONN || error == ESTALE || error == EIO || error == EBADF;
}

static void *writer_main(void *unused)
{
    (void)unused;
    int retry_ms = RETRY_MIN_MS;
    int64_t next_reopen_check = clock_ms(CLOCK_MONOTONIC) + REOPEN_CHECK_MS;
    pthread_mutex_lock(&w.mutex);
    for (;;) {
        /* Writing works again and nothing followed the drops: report them now. */
        if (w.count == 0 && w.dropped_records > 0 && w.last_error == 0)
            queue_drop_note_locked();
        while (w.count == 0 && !w.finishing)
            pthread_cond_wait(&w.wake, &w.mutex);
        if (w.count == 0)
            break;
        pthread_mutex_unlock(&w.mutex);
        if (clock_ms(CLOCK_MONOTONIC) >= next_reopen_check) {
            reopen_if_moved();
            next_reopen_check = clock_ms(CLOCK_MONOTONIC) + REOPEN_CHECK_MS;
        }
        int error = write_some();
        pthread_mutex_lock(&w.mutex);
        w.last_error = error;
        if (error != 0) {
            /* Disk full or EIO: wait, then try again; the reading side keeps queueing. */
            pthread_mutex_unlock(&w.mutex);
            if (fd_may_be_dead(error)) {
                reopen_if_moved();
                next_reopen_check = clock_ms(CLOCK_MONOTONIC) + REOPEN_CHECK_MS;
            }
            struct timespec pause = {retry_ms / 1000, (long)(retry_ms % 1000) * 1000000L};
            nanosleep(&pause, NULL);
            retry_ms = retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : retry_ms * 2;
            pthread_mutex_lock(&w.mutex);
        } else {
            retry_ms = RETRY_MIN_MS;
        }
    }
    report_capped();
    w.exited = 1;
    pthread_cond_broadcast(&w.room);
    pthread_mutex_unlock(&w.mutex);
    return NULL;
}

int fdl_writer_start(const struct fdl_writer_settings *settings)
{
    w.settings = *settings;
    w.capacity = (size_t)(settings->buffer_bytes / (long)sizeof(struct batch));
    if (w.capacity < 4)
        w.capacity = 4;
    /* The ring's batches, the open one and the note's: batches change places, never bytes. */
    struct batch *batches = malloc((w.capacity + 2) * sizeof *batches);
    w.ring = malloc(w.capacity * sizeof *w.ring);
    if (batches == NULL || w.ring == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < w.capacity; i++)
        w.ring[i] = &batches[i];
    w.open = &batches[w.capacity];
    empty(w.open);
    w.note = &batches[w.capacity + 1];
    struct rlimit limit;
    w.size_limit = getrlimit(RLIMIT_FSIZE, &limit) == 0 ? limit.rlim_cur : RLIM_INFINITY;
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_cond_init(&w.room, &attributes);
    pthread_condattr_destroy(&attributes);
    check_filesystem();
    reopen_if_moved();
    int rc = pthread_create(&w.thread, NULL, writer_main, NULL);
    return -rc;
}

int fdl_writer_sync(int give_up_ms)
{
    fdl_writer_flush();
    struct timespec deadline = monotonic_after(give_up_ms);
    pthread_mutex_lock(&w.mutex);
    while (w.count > 0 && !w.exited &&
           pthread_cond_timedwait(&w.room, &w.mutex, &deadline) != ETIMEDOUT)
        ;
    int written = w.count == 0;
    pthread_mutex_unlock(&w.mutex);
    return written ? 0 : -ETIMEDOUT;
}

int fdl_writer_finish(int give_up_ms)
{
    fdl_writer_flush();
    pthread_mutex_lock(&w.mutex);
    w.finishing = 1;
    pthread_cond_signal(&w.wake);
    /* A log that stays unwritable (or hangs) must not keep the helper alive forever.  Not
     * pthread_timedjoin_np: it times with the wall clock, which a step can rush. */
    struct timespec deadline = monotonic_after(give_up_ms);
    while (!w.exited && pthread_cond_timedwait(&w.room, &w.mutex, &deadline) != ETIMEDOUT)
        ;
    int exited = w.exited;
    pthread_mutex_unlock(&w.mutex);
    if (!exited)
        return -ETIMEDOUT;
    pthread_join(w.thread, NULL);
    return 0;
}
