/*
 * internal.h - pieces shared by the helper executable and the extension:
 * record formatting and per-writer line assembly.  Not part of the API.
 */
#ifndef FDLOG_INTERNAL_H
#define FDLOG_INTERNAL_H
#include <stddef.h>
#include <stdint.h>

/* Every record, its '\n' included, fits one write(2) that POSIX keeps whole. */
#define FDL_RECORD_MAX 4096
/* The longest prefix: 24 (time) + 64 (node) + 64 (name) + 10 (pid) + 12 (separators, stream, mark). */
#define FDL_PREFIX_MAX 174
/* Payload bytes per record: fixed per format so that splitting depends on the bytes alone. */
#define FDL_PAYLOAD_MAX_PREFIXED 3840
#define FDL_PAYLOAD_MAX_RAW (FDL_RECORD_MAX - 1)
#define FDL_NAME_MAX 64

enum fdl_stream { FDL_STREAM_OUT = 1, FDL_STREAM_ERR = 2, FDL_STREAM_META = 3 };
/* Added to a stream for bytes from the actor's own pipe (its Python sys.stdout/stderr), a
 * second channel of the same pid and stream: its lines are assembled in a slot of their own
 * so that they never mix with the bytes the actor's C code writes to the socket meanwhile. */
#define FDL_CHANNEL_PIPE 0x10
#define FDL_STREAM_OF(stream) ((stream) & 0x0f)

/* Marks after the stream name: see docs/format.md. */
#define FDL_MARK_LINE ':'
#define FDL_MARK_FRAGMENT '+'
#define FDL_MARK_SNAPSHOT '~'

struct fdl_record_format {
    char name[FDL_NAME_MAX + 1];
    char node[FDL_NAME_MAX + 1];
    int raw;
    /* cached "YYYY-MM-DDTHH:MM:SS." for the last second formatted */
    int64_t cached_second;
    char cached_time[24];
};

void fdl_format_init(struct fdl_record_format *format, const char *name, const char *node, int raw);
size_t fdl_payload_max(const struct fdl_record_format *format);
/* The part of a record's prefix that is fixed per writer, " NODE NAME[PID] STREAM"
 * (empty in raw format); out needs FDL_PREFIX_MAX bytes.  Returns its length. */
size_t fdl_format_label(const struct fdl_record_format *format, char *out, int pid, int stream);
/* Writes one record (at most FDL_RECORD_MAX bytes, '\n' included) to out; returns its length. */
size_t fdl_format_record(struct fdl_record_format *format, char *out, int64_t now_ms,
                         const char *label, size_t label_length, char mark,
                         const unsigned char *payload, size_t length);

/* What appends to the file on fd's filesystem need (open_log.c): a mask of the facts
 * below, or -errno when fstatfs fails. */
#define FDL_FS_NEEDS_LOCK 1          /* a lock around each batch (network and FUSE) */
#define FDL_FS_KEEPS_APPENDS_WHOLE 2 /* one write of many records is never torn */
int fdl_filesystem_facts(int fd);

/* Receives each finished record. */
typedef void (*fdl_record_sink)(void *context, const char *record, size_t length, char mark);

#define FDL_SLOT_COUNT 128

/* The line being assembled for one (pid, stream). */
struct fdl_slot {
    int pid;                /* 0: a writer outside the helper's pid namespace */
    int stream;             /* 0: slot free */
    int pending_cr;         /* saw '\r' last: '\n' may follow (CRLF) or a redraw starts */
    int redraw;             /* the buffer holds a state drawn after a carriage return */
    int open_chain;         /* the last record emitted for this slot was a fragment */
    int64_t last_data_ms;
    int64_t last_snapshot_ms;
    size_t label_length;
    char label[FDL_PREFIX_MAX]; /* formatted once per writer: the per-record cost is a copy */
    size_t length;
    unsigned char buffer[FDL_PAYLOAD_MAX_RAW];
};

struct fdl_assembler {
    struct fdl_record_format format;
    int snapshot_ms;
    fdl_record_sink sink;
    void *context;
    int64_t wall_offset_ms; /* wall clock minus the times fed in: records are stamped with
                             * wall time, while idle and snapshot timing use the times fed */
    int last_slot;          /* the slot used last: consecutive reads often come from one writer */
    int owner;              /* the pid whose own pipes are read (0: none) */
    int owner_chain[2];     /* per stream (out, err): which of the owner's channels has an
                             * open fragment chain: 0 none, 1 the socket, 2 the pipe */
    int64_t drained_ms[4];  /* per channel (fdl_assembler_drained): when a read last found
                             * it empty; INT64_MAX until told, as if every byte were fed */
    /* While the sink runs: the slot whose record it gets (its writer) and the payload's
     * length (the record's last bytes before its '\n'); NULL for the empty record that
     * ends another channel's chain. */
    const struct fdl_slot *emitting;
    size_t emitting_length;
    struct fdl_slot slots[FDL_SLOT_COUNT];
};

void fdl_assembler_init(struct fdl_assembler *assembler, const char *name, const char *node,
                        int raw, int snapshot_ms, fdl_record_sink sink, void *context);
void fdl_assembler_feed(struct fdl_assembler *assembler, int pid, int stream,
                        const unsigned char *data, size_t length, int64_t now_ms);
/* The slot holds nothing its writer's next bytes depend on (no unfinished line). */
int fdl_slot_is_idle(const struct fdl_assembler *assembler, const struct fdl_slot *slot,
                     int64_t now_ms);
/* A read of the channel of `stream` found it empty at now_ms: what its writers wrote
 * before then has been fed. */
void fdl_assembler_drained(struct fdl_assembler *assembler, int stream, int64_t now_ms);
/* Flush partial lines idle for idle_ms, free the slots idle that long and those of writers
 * that have exited.  Idle: fed nothing for idle_ms up to the last time their channel was
 * found empty, so that bytes still unread behind other writers' do not count as silence;
 * idle_ms 0 flushes every line as it stands. */
void fdl_assembler_tick(struct fdl_assembler *assembler, int64_t now_ms, int idle_ms);
/* The stream reached EOF (or the helper stops): flush every line of it as it stands. */
void fdl_assembler_close_stream(struct fdl_assembler *assembler, int stream, int64_t now_ms);
/* The slot of (pid, stream), or NULL. */
struct fdl_slot *fdl_assembler_held(struct fdl_assembler *assembler, int pid, int stream);
/* The slot's bytes came from a process that another one now follows under the same pid
 * (pid reuse, or two writers outside the pid namespace): flush its line and end it. */
void fdl_assembler_part(struct fdl_assembler *assembler, struct fdl_slot *slot, int64_t now_ms);
/* A record written by skyrl_fdlog itself. */
void fdl_assembler_note(struct fdl_assembler *assembler, int pid, const char *text, int64_t now_ms);

/* The helper's writing side (log_writer.c). */
struct fdl_writer_settings {
    int fd;                   /* the log, O_APPEND */
    const char *path;         /* to reopen after logrotate, and for messages */
    const char *name, *node;
    int raw, lock;
    long buffer_bytes;        /* queue size: beyond it records are dropped and counted */
    long long max_bytes;      /* 0, or the cap on the file's size: see log_writer.c over_cap */
};
int fdl_writer_start(const struct fdl_writer_settings *settings);
/* Append a record to the batch being filled (reading side only). */
void fdl_writer_add(const char *record, size_t length);
/* Hand the batch being filled to the writing thread. */
void fdl_writer_flush(void);
/* Hand over the open batch and wait until every batch handed over is written (or counted as
 * dropped), at most give_up_ms: 0, or -ETIMEDOUT. */
int fdl_writer_sync(int give_up_ms);
/* Write everything queued, waiting at most give_up_ms; 0 or -ETIMEDOUT. */
int fdl_writer_finish(int give_up_ms);

#endif
