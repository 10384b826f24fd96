/*
 * record.c - formatting one record: "TIME NODE NAME[PID] STREAM<mark> PAYLOAD\n".
 * Built into both binaries: the cffi extension (skyrl_fdlog._fdlog) and skyrl-fdlog-helper.
 *
 * The fields before the payload never contain a space (names are sanitised),
 * so a reader finds the payload after the fifth space whatever it contains.
 * fdl_format_line, at the end, formats whole lines the same way for the
 * records Python writes itself (only the extension calls it; it lives beside
 * the format so that the format is written once).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fdlog.h"
#include "internal.h"

static int is_name_byte(unsigned char c, int allow_colon)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-' || (allow_colon && c == ':');
}

/* Copy at most FDL_NAME_MAX bytes, replacing bytes a reader could mistake for a separator. */
static void sanitise(char *out, const char *in, int allow_colon)
{
    size_t i = 0;
    for (; in != NULL && in[i] != '\0' && i < FDL_NAME_MAX; i++)
        out[i] = is_name_byte((unsigned char)in[i], allow_colon) ? in[i] : '_';
    if (i == 0)
        out[i++] = '-';
    out[i] = '\0';
}

void fdl_format_init(struct fdl_record_format *format, const char *name, const char *node, int raw)
{
    memset(format, 0, sizeof *format);
    sanitise(format->name, name, 1);
    sanitise(format->node, node, 0);
    format->raw = raw;
    format->cached_second = -1;
}

size_t fdl_payload_max(const struct fdl_record_format *format)
{
    return format->raw ? FDL_PAYLOAD_MAX_RAW : FDL_PAYLOAD_MAX_PREFIXED;
}

static const char *stream_name(int stream)
{
    switch (FDL_STREAM_OF(stream)) {
    case FDL_STREAM_OUT: return "out";
    case FDL_STREAM_ERR: return "err";
    default: return "fdlog";
    }
}

/* "YYYY-MM-DDTHH:MM:SS.mmmZ", 24 bytes; the part up to the second is cached. */
static void format_time(struct fdl_record_format *format, char *out, int64_t now_ms)
{
    int64_t second = now_ms / 1000;
    if (second != format->cached_second) {
        time_t t = (time_t)second;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(format->cached_time, sizeof format->cached_time, "%Y-%m-%dT%H:%M:%S.", &tm);
        format->cached_second = second;
    }
    memcpy(out, format->cached_time, 20);
    int ms = (int)(now_ms % 1000);
    out[20] = (char)('0' + ms / 100);
    out[21] = (char)('0' + ms / 10 % 10);
    out[22] = (char)('0' + ms % 10);
    out[23] = 'Z';
}

size_t fdl_format_label(const struct fdl_record_format *format, char *out, int pid, int stream)
{
    if (format->raw)
        return 0;
    int length = snprintf(out, FDL_PREFIX_MAX, " %s %s[%d] %s", format->node, format->name, pid,
                          stream_name(stream));
    return length < 0 ? 0 : (size_t)length;
}

size_t fdl_format_record(struct fdl_record_format *format, char *out, int64_t now_ms,
                         const char *label, size_t label_length, char mark,
                         const unsigned char *payload, size_t length)
{
    size_t used = 0;
    if (!format->raw) {
        format_time(format, out, now_ms);
        memcpy(out + 24, label, label_length);
        used = 24 + label_length;
        out[used++] = mark;
        out[used++] = ' ';
    }
    size_t room = FDL_RECORD_MAX - 1 - used;
    if (length > room)
        length = room; /* callers never pass more than fdl_payload_max() */
    memcpy(out + used, payload, length);
    used += length;
    out[used++] = '\n';
    return used;
}

long fdl_format_line(const char *name, const char *node, int pid, int stream, long long now_ms,
                     const unsigned char *text, size_t length, unsigned char *out,
                     size_t capacity)
{
    if (memchr(text, '\n', length) != NULL)
        return -EINVAL; /* a reader would take the rest for a record of its own */
    struct fdl_record_format format;
    fdl_format_init(&format, name, node, 0);
    char label[FDL_PREFIX_MAX];
    size_t label_length = fdl_format_label(&format, label, pid, stream);
    size_t room = fdl_payload_max(&format), used = 0;
    do { /* an empty line is one record too */
        size_t piece = length < room ? length : room;
        if (capacity - used < FDL_RECORD_MAX)
            return -ENOSPC;
        /* A full piece with more to come is a fragment, as the helper leaves a long line. */
        used += fdl_format_record(&format, (char *)out + used, now_ms, label, label_length,
                                  piece < length ? FDL_MARK_FRAGMENT : FDL_MARK_LINE, text, piece);
        text += piece;
        length -= piece;
    } while (length > 0);
    return (long)used;
}
