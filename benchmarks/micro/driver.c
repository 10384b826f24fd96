/*
 * driver.c - loops over the helper's own C code for the micro-benchmarks (micro_bench.py).
 *
 * Built with csrc/shared/{assemble,record,levels}.c into a small shared library that the
 * benchmarks call through ctypes.  Each function runs its loop in C, so one call times
 * thousands of lines and the cost of calling from Python (about a microsecond) stays
 * out of the per-line figure.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fdlog.h"
#include "internal.h"

/* The real build hides every symbol (-fvisibility=hidden); these three are called by name. */
#define MICRO_API __attribute__((visibility("default")))

/* The helper hands records to its writing thread; here they are only counted. */
static void count_bytes(void *context, const char *record, size_t length, char mark)
{
    (void)record;
    (void)mark;
    *(uint64_t *)context += length;
}

/* Feed `length` bytes of whole lines `rounds` times, `chunk` bytes per read (as the helper
 * reads them), the reads taken in turn from `writers` pids.  Returns the record bytes made,
 * or 0 when the assembler cannot be allocated. */
MICRO_API uint64_t micro_assemble(const unsigned char *data, size_t length, size_t chunk, int writers,
                        int rounds)
{
    struct fdl_assembler *assembler = malloc(sizeof *assembler); /* 128 slots: 500 KiB */
    uint64_t made = 0;
    if (assembler == NULL || chunk == 0 || writers < 1)
        return 0;
    fdl_assembler_init(assembler, "bench", "node-0", 0, 5000, count_bytes, &made);
    int64_t now_ms = 1764000000000;
    for (int round = 0; round < rounds; round++)
        for (size_t at = 0, read = 0; at < length; at += chunk, read++) {
            size_t size = length - at < chunk ? length - at : chunk;
            fdl_assembler_feed(assembler, 1000 + (int)(read % (size_t)writers), FDL_STREAM_OUT,
                               data + at, size, now_ms);
        }
    fdl_assembler_close_stream(assembler, FDL_STREAM_OUT, now_ms);
    free(assembler);
    return made;
}

/* Format `count` records of `payload_length` bytes, 1 ms apart (the cached second is
 * reused as in a busy helper).  Returns the bytes formatted. */
MICRO_API uint64_t micro_format(int count, size_t payload_length)
{
    static char out[FDL_RECORD_MAX];
    static unsigned char payload[FDL_PAYLOAD_MAX_PREFIXED];
    struct fdl_record_format format;
    char label[FDL_PREFIX_MAX];
    if (payload_length > sizeof payload)
        payload_length = sizeof payload;
    memset(payload, 'x', payload_length);
    fdl_format_init(&format, "bench", "node-0", 0);
    size_t label_length = fdl_format_label(&format, label, 4242, FDL_STREAM_OUT);
    uint64_t made = 0;
    for (int i = 0; i < count; i++)
        made += fdl_format_record(&format, out, 1764000000000 + i, label, label_length,
                                  FDL_MARK_LINE, payload, payload_length);
    return made;
}

/* Classify every '\n'-ended line of `data`, `rounds` times.  Returns the sum of the levels
 * (so that the work cannot be optimised away), or -1 when the table did not compile. */
MICRO_API long micro_levels(const unsigned char *data, size_t length, int rounds)
{
    long total = 0;
    for (int round = 0; round < rounds; round++) {
        int in_traceback = 0;
        for (size_t at = 0; at < length;) {
            const unsigned char *end = memchr(data + at, '\n', length - at);
            size_t size = end ? (size_t)(end - (data + at)) : length - at;
            int level = fdl_level_of(data + at, size, &in_traceback);
            if (level < 0)
                return -1;
            total += level;
            at += size + 1;
        }
    }
    return total;
}
