/*
 * assembler_entry.c - tests only, never shipped: runs the line assembler on given chunks,
 * exactly as the helper feeds it, for the property tests (tests/test_core_assembler.py,
 * through tests/_assembler_entry.py) and the sanitizer build (tests/test_core_build.py).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "assembler_entry.h"
#include "internal.h"

struct collected {
    unsigned char *out;
    long capacity;
    long used;
    int overflow;
};

static void collect(void *context, const char *record, size_t length, char mark)
{
    (void)mark;
    struct collected *c = context;
    if (c->used + (long)length > c->capacity) {
        c->overflow = 1;
        return;
    }
    memcpy(c->out + c->used, record, length);
    c->used += (long)length;
}

long fdl_test_assemble(const char *name, const char *node, int raw, int snapshot_ms,
                       const unsigned char *data, const long *offsets, const long *lengths,
                       const int *pids, const int *streams, const long long *times_ms,
                       long chunk_count, int close_at_end,
                       unsigned char *out, long out_capacity)
{
    struct collected collected = {out, out_capacity, 0, 0};
    struct fdl_assembler *assembler = malloc(sizeof *assembler);
    if (assembler == NULL)
        return -ENOMEM;
    fdl_assembler_init(assembler, name, node, raw, snapshot_ms, collect, &collected);
    for (long i = 0; i < chunk_count; i++)
        if (streams[i] & FDL_CHANNEL_PIPE)
            assembler->owner = pids[i]; /* as the helper is told with owner= */
    long long last_ms = 0;
    for (long i = 0; i < chunk_count; i++) {
        fdl_assembler_feed(assembler, pids[i], streams[i], data + offsets[i], (size_t)lengths[i],
                           times_ms[i]);
        last_ms = times_ms[i];
    }
    if (close_at_end) {
        const int streams_to_close[] = {FDL_STREAM_OUT | FDL_CHANNEL_PIPE,
                                        FDL_STREAM_ERR | FDL_CHANNEL_PIPE, FDL_STREAM_OUT,
                                        FDL_STREAM_ERR};
        for (int i = 0; i < 4; i++)
            fdl_assembler_close_stream(assembler, streams_to_close[i], last_ms);
    }
    free(assembler);
    return collected.overflow ? -ENOSPC : collected.used;
}
