/*
 * assemble.c - turning each writer's byte stream into whole-line records.
 *
 * The kernel hands the helper chunks that each come from one process (the
 * socket has SO_PASSCRED), but a chunk may end mid-line and chunks of many
 * writers interleave.  Each (pid, stream) gets a slot holding its unfinished
 * line; the owner's (the actor's) own pipe, a second channel without credentials, gets
 * slots of its own (FDL_CHANNEL_PIPE added to the stream).  Rules (docs/format.md):
 *   '\n' ends a line; "\r\n" counts as '\n'.
 *   A lone '\r' starts a redraw (tqdm): the state before it becomes a '~'
 *   snapshot, at most one per snapshot_ms, and is otherwise discarded, so a
 *   progress bar never grows into one huge line.
 *   A line longer than one record's payload leaves in '+' fragments.
 *   A partial line idle for idle_ms leaves as a '+' fragment (or, in a redraw,
 *   as a snapshot) so that output of a hung writer is still seen.  Idle: no bytes
 *   from its writer up to the last time its channel was found empty, so that the
 *   rest of a line still unread behind other writers' bytes does not count as silence.
 * Slots are freed when idle for idle_ms with their line done, when their writer has
 * exited, and an idle or else the least recently used one is taken when none is free:
 * memory is fixed.
 * A free slot has stream 0: pid 0 is a real writer, one outside the helper's
 * pid namespace.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <string.h>

#include "internal.h"

/* The owner's pipe and its socket are two channels of one (pid, stream), and a reader
 * rejoins fragments by (pid, stream): before a record of one channel, the other's open
 * fragment chain is ended with an empty line end (both have the same label).  That line is
 * cut in two; no byte is lost.  Tracked per stream, not per slot: a chain stays open in the
 * file after its slot is freed. */
static void track_owner_chain(struct fdl_assembler *assembler, const struct fdl_slot *slot,
                              char mark, int64_t now_ms)
{
    int base = FDL_STREAM_OF(slot->stream);
    if (slot->pid != assembler->owner || (base != FDL_STREAM_OUT && base != FDL_STREAM_ERR))
        return;
    int channel = slot->stream & FDL_CHANNEL_PIPE ? 2 : 1;
    int *open = &assembler->owner_chain[base - 1];
    if (*open != 0 && *open != channel && !assembler->format.raw) { /* raw: no chains */
        char record[FDL_RECORD_MAX];
        size_t size = fdl_format_record(&assembler->format, record,
                                        now_ms + assembler->wall_offset_ms, slot->label,
                                        slot->label_length, FDL_MARK_LINE,
                                        (const unsigned char *)"", 0);
        assembler->sink(assembler->context, record, size, FDL_MARK_LINE);
    }
    *open = mark == FDL_MARK_FRAGMENT ? channel : 0;
}

static void emit(struct fdl_assembler *assembler, struct fdl_slot *slot, char mark,
                 const unsigned char *payload, size_t length, int64_t now_ms)
{
    track_owner_chain(assembler, slot, mark, now_ms);
    char record[FDL_RECORD_MAX];
    size_t size = fdl_format_record(&assembler->format, record, now_ms + assembler->wall_offset_ms,
                                    slot->label, slot->label_length, mark, payload, length);
    assembler->emitting = slot;
    assembler->emitting_length = length;
    assembler->sink(assembler->context, record, size, mark);
    assembler->emitting = NULL;
    slot->open_chain = mark == FDL_MARK_FRAGMENT;
}

static void emit_buffer(struct fdl_assembler *assembler, struct fdl_slot *slot, char mark,
                        int64_t now_ms)
{
    emit(assembler, slot, mark, slot->buffer, slot->length, now_ms);
    slot->length = 0;
}

/* A line ends: its payload is the slot's buffer, or while that is empty the line straight
 * from the chunk read. */
static void end_line_of(struct fdl_assembler *assembler, struct fdl_slot *slot,
                        const unsigned char *payload, size_t length, int64_t now_ms)
{
    emit(assembler, slot, FDL_MARK_LINE, payload, length, now_ms);
    slot->length = 0;
    slot->redraw = 0;
}

static void end_line(struct fdl_assembler *assembler, struct fdl_slot *slot, int64_t now_ms)
{
    end_line_of(assembler, slot, slot->buffer, slot->length, now_ms);
}

static int snapshot_due(const struct fdl_assembler *assembler, const struct fdl_slot *slot,
                        int64_t now_ms)
{
    return now_ms - slot->last_snapshot_ms >= assembler->snapshot_ms;
}

/* A carriage return not followed by '\n': what was drawn so far is overwritten. */
static void carriage_return(struct fdl_assembler *assembler, struct fdl_slot *slot, int64_t now_ms)
{
    /* An open fragment chain must be terminated so the reader can rejoin it. */
    if (slot->open_chain || (slot->length > 0 && snapshot_due(assembler, slot, now_ms))) {
        emit_buffer(assembler, slot, FDL_MARK_SNAPSHOT, now_ms);
        slot->last_snapshot_ms = now_ms;
    }
    slot->length = 0;
    slot->redraw = 1;
}

static void append(struct fdl_assembler *assembler, struct fdl_slot *slot,
                   const unsigned char *data, size_t length, int64_t now_ms)
{
    size_t capacity = fdl_payload_max(&assembler->format);
    while (length > 0) {
        if (slot->length == capacity)
            emit_buffer(assembler, slot, FDL_MARK_FRAGMENT, now_ms);
        size_t take = capacity - slot->length;
        if (take > length)
            take = length;
        memcpy(slot->buffer + slot->length, data, take);
        slot->length += take;
        data += take;
        length -= take;
    }
}

/* A slot holds nothing the writer's next bytes depend on: no unfinished line, no open
 * fragment chain, no redraw, and no snapshot rate limit still running (else how the bytes
 * were split into reads would change which snapshots appear).  Such a slot may be taken
 * for another writer; it is kept for its own (with its label) until the idle tick frees
 * it, since formatting the label and scanning for a slot again on every line cost more
 * than the line itself. */
int fdl_slot_is_idle(const struct fdl_assembler *assembler, const struct fdl_slot *slot,
                     int64_t now_ms)
{
    return slot->length == 0 && !slot->pending_cr && !slot->redraw && !slot->open_chain &&
           snapshot_due(assembler, slot, now_ms);
}


/* Flush whatever the slot holds as it stands. */
static void flush_line(struct fdl_assembler *assembler, struct fdl_slot *slot, int64_t now_ms)
{
    if (slot->pending_cr) {
        slot->pending_cr = 0;
        carriage_return(assembler, slot, now_ms);
    }
    if (slot->length > 0)
        emit_buffer(assembler, slot, slot->redraw ? FDL_MARK_SNAPSHOT : FDL_MARK_FRAGMENT, now_ms);
}

/* ... and free the slot: the writer is gone or evicted. */
static void flush_slot(struct fdl_assembler *assembler, struct fdl_slot *slot, int64_t now_ms)
{
    flush_line(assembler, slot, now_ms);
    slot->stream = 0;
}

static struct fdl_slot *find_slot(struct fdl_assembler *assembler, int pid, int stream,
                                  int64_t now_ms)
{
    struct fdl_slot *last = &assembler->slots[assembler->last_slot];
    if (last->pid == pid && last->stream == stream)
        return last;
    int free_index = -1, idle_index = -1, oldest_index = 0;
    for (int i = 0; i < FDL_SLOT_COUNT; i++) {
        struct fdl_slot *slot = &assembler->slots[i];
        if (slot->pid == pid && slot->stream == stream) {
            assembler->last_slot = i;
            return slot;
        }
        if (slot->stream == 0 && free_index < 0)
            free_index = i;
        if (slot->stream != 0 && fdl_slot_is_idle(assembler, slot, now_ms) &&
            (idle_index < 0 || slot->last_data_ms < assembler->slots[idle_index].last_data_ms))
            idle_index = i;
        if (slot->last_data_ms < assembler->slots[oldest_index].last_data_ms)
            oldest_index = i;
    }
    if (free_index < 0) {
        /* No free slot: the idle slot heard from least recently is taken (it holds nothing
         * to flush), else the writer heard from least recently gives way. */
        free_index = idle_index >= 0 ? idle_index : oldest_index;
        flush_slot(assembler, &assembler->slots[free_index], now_ms);
    }
    struct fdl_slot *slot = &assembler->slots[free_index];
    memset(slot, 0, offsetof(struct fdl_slot, label_length));
    slot->pid = pid;
    slot->stream = stream;
    slot->label_length = fdl_format_label(&assembler->format, slot->label, pid, stream);
    slot->last_snapshot_ms = INT64_MIN / 2;
    assembler->last_slot = free_index;
    return slot;
}

void fdl_assembler_init(struct fdl_assembler *assembler, const char *name, const char *node,
                        int raw, int snapshot_ms, fdl_record_sink sink, void *context)
{
    memset(assembler, 0, sizeof *assembler);
    fdl_format_init(&assembler->format, name, node, raw);
    assembler->snapshot_ms = snapshot_ms;
    assembler->sink = sink;
    assembler->context = context;
    for (size_t i = 0; i < sizeof assembler->drained_ms / sizeof assembler->drained_ms[0]; i++)
        assembler->drained_ms[i] = INT64_MAX;
}

/* The index of a slot's channel in drained_ms: out, err, and the owner's two pipes. */
static int channel_of(int stream)
{
    return (FDL_STREAM_OF(stream) == FDL_STREAM_ERR) + (stream & FDL_CHANNEL_PIPE ? 2 : 0);
}

void fdl_assembler_drained(struct fdl_assembler *assembler, int stream, int64_t now_ms)
{
    assembler->drained_ms[channel_of(stream)] = now_ms;
}

/* The first '\n' or '\r' in data, or data + length. */
static const unsigned char *find_line_break(const unsigned char *data, size_t length)
{
    const unsigned char *end = data + length;
    const unsigned char *newline = memchr(data, '\n', length);
    const unsigned char *limit = newline ? newline : end;
    const unsigned char *carriage = memchr(data, '\r', (size_t)(limit - data));
    return carriage ? carriage : limit;
}

void fdl_assembler_feed(struct fdl_assembler *assembler, int pid, int stream,
                        const unsigned char *data, size_t length, int64_t now_ms)
{
    struct fdl_slot *slot = find_slot(assembler, pid, stream, now_ms);
    const unsigned char *end = data + length;
    slot->last_data_ms = now_ms;
    while (data < end) {
        if (slot->pending_cr) {
            slot->pending_cr = 0;
            if (*data == '\n') {
                end_line(assembler, slot, now_ms);
                data++;
                continue;
            }
            carriage_return(assembler, slot, now_ms);
        }
        const unsigned char *brk = find_line_break(data, (size_t)(end - data));
        /* While the slot holds nothing, records come straight from the chunk (as append and
         * end_line would make them): only a line's unfinished end is copied into the slot. */
        size_t capacity = fdl_payload_max(&assembler->format);
        for (; slot->length == 0 && (size_t)(brk - data) > capacity; data += capacity)
            emit(assembler, slot, FDL_MARK_FRAGMENT, data, capacity, now_ms);
        if (slot->length == 0 && brk < end && *brk == '\n') {
            end_line_of(assembler, slot, data, (size_t)(brk - data), now_ms);
            data = brk + 1;
            continue;
        }
        append(assembler, slot, data, (size_t)(brk - data), now_ms);
        if (brk == end)
            break;
        if (*brk == '\n')
            end_line(assembler, slot, now_ms);
        else
            slot->pending_cr = 1;
        data = brk + 1;
    }
}

void fdl_assembler_tick(struct fdl_assembler *assembler, int64_t now_ms, int idle_ms)
{
    for (int i = 0; i < FDL_SLOT_COUNT; i++) {
        struct fdl_slot *slot = &assembler->slots[i];
        if (slot->stream == 0)
            continue;
        /* Under load a channel may still hold the rest of a line after a round of reads:
         * its writer is known quiet only up to when the channel was last found empty. */
        int64_t quiet_until = assembler->drained_ms[channel_of(slot->stream)];
        if (quiet_until > now_ms)
            quiet_until = now_ms;
        if (idle_ms > 0 && quiet_until - slot->last_data_ms < idle_ms)
            continue;
        if (slot->pending_cr) {
            slot->pending_cr = 0;
            carriage_return(assembler, slot, now_ms);
        }
        if (slot->length > 0) {
            if (!slot->redraw) {
                emit_buffer(assembler, slot, FDL_MARK_FRAGMENT, now_ms);
            } else if (snapshot_due(assembler, slot, now_ms)) {
                emit_buffer(assembler, slot, FDL_MARK_SNAPSHOT, now_ms);
                slot->last_snapshot_ms = now_ms;
            }
        }
        if ((kill(slot->pid, 0) != 0 && errno == ESRCH) ||
            fdl_slot_is_idle(assembler, slot, now_ms))
            flush_slot(assembler, slot, now_ms);
    }
}

void fdl_assembler_close_stream(struct fdl_assembler *assembler, int stream, int64_t now_ms)
{
    for (int i = 0; i < FDL_SLOT_COUNT; i++)
        if (assembler->slots[i].stream == stream)
            flush_slot(assembler, &assembler->slots[i], now_ms);
}

struct fdl_slot *fdl_assembler_held(struct fdl_assembler *assembler, int pid, int stream)
{
    struct fdl_slot *last = &assembler->slots[assembler->last_slot];
    if (last->pid == pid && last->stream == stream)
        return last;
    for (int i = 0; i < FDL_SLOT_COUNT; i++)
        if (assembler->slots[i].pid == pid && assembler->slots[i].stream == stream)
            return &assembler->slots[i];
    return NULL;
}

/* A reader rejoins '+' records by (pid, stream): before another process's bytes under the
 * same pid, the slot's open chain is ended with an empty line end, as for the owner's two
 * channels (track_owner_chain).  Its line is cut there; no byte is lost or misattributed. */
void fdl_assembler_part(struct fdl_assembler *assembler, struct fdl_slot *slot, int64_t now_ms)
{
    flush_line(assembler, slot, now_ms);
    if (slot->open_chain && !assembler->format.raw)
        emit(assembler, slot, FDL_MARK_LINE, (const unsigned char *)"", 0, now_ms);
    slot->stream = 0;
}

void fdl_assembler_note(struct fdl_assembler *assembler, int pid, const char *text, int64_t now_ms)
{
    struct fdl_slot note = {.pid = pid, .stream = FDL_STREAM_META};
    note.label_length = fdl_format_label(&assembler->format, note.label, pid, FDL_STREAM_META);
    emit(assembler, &note, FDL_MARK_LINE, (const unsigned char *)text, strlen(text), now_ms);
}
