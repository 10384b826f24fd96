/*
 * levels.c - the level of a line, from the one table of skyrl_fdlog/levels.json
 * Built into both binaries: the cffi extension (skyrl_fdlog._fdlog) and skyrl-fdlog-helper.
 * (csrc/shared/levels.h is generated from it at every build; the reader reads the same
 * file), so the helper and the reader classify alike.  See _levels.py and
 * _message.py for the rules; a test runs both on the same samples.
 * The helper classifies every line it surfaces errors from, so each pattern comes
 * with a gate derived from it (_levels.gate): a line that fails the gate cannot
 * match, and only lines that pass it pay for the regex.
 */
#include <regex.h>
#include <stdint.h>
#include <string.h>

#include "fdlog.h"
#include "internal.h"
#define FDL_LEVELS_TABLE
#include "levels.h"

enum { PATTERN_COUNT = sizeof fdl_level_patterns / sizeof fdl_level_patterns[0] };

/* A pattern's gate (levels.h), read once into the form tested on every line: glibc's
 * regexec costs about a microsecond a call and searches a long line byte by byte, while
 * most lines fail the gate at their first byte or hold none of the literals. */
struct gate {
    int shape_count, literal_count;
    uint8_t first[256];     /* 1: a shape starts with this byte */
    uint8_t shape_length[FDL_LEVEL_SHAPES_MAX];
    uint32_t sets[FDL_LEVEL_SHAPES_MAX][FDL_LEVEL_SHAPE_LENGTH][256 / 32];
    const char *literal[FDL_LEVEL_LITERALS_MAX];
    size_t literal_length[FDL_LEVEL_LITERALS_MAX];
    int at_start[FDL_LEVEL_LITERALS_MAX];
    size_t anchor[FDL_LEVEL_LITERALS_MAX]; /* where in the literal its search starts */
};

struct compiled_pattern {
    regex_t regex;
    struct gate gate;
};

static struct compiled_pattern patterns[PATTERN_COUNT], traceback_start, traceback_inside;
static int compiled; /* 1 ready, -1 a pattern did not compile */

static void read_gate(const struct fdl_level_pattern *source, struct gate *gate)
{
    for (const char *at = source->shapes; at != NULL && *at != '\0'; at++) {
        int shape = gate->shape_count++, position = 0;
        for (; *at != '\2'; at++, position++) {
            for (; *at != '\1'; at++) {
                uint8_t byte = (uint8_t)*at;
                gate->sets[shape][position][byte / 32] |= 1u << (byte % 32);
                gate->first[byte] |= position == 0;
            }
        }
        gate->shape_length[shape] = (uint8_t)position;
    }
    for (const char *at = source->literals; at != NULL && *at != '\0'; at++) {
        int i = gate->literal_count++;
        gate->at_start[i] = *at == '\3';
        gate->literal[i] = at + gate->at_start[i];
        at = strchr(at, '\1');
        gate->literal_length[i] = (size_t)(at - gate->literal[i]);
        /* Searched for by its first byte that is rare in text (not a lower-case letter,
         * digit or space): memchr skips most of a line at a time. */
        size_t anchor = strspn(gate->literal[i], "abcdefghijklmnopqrstuvwxyz0123456789 ");
        gate->anchor[i] = anchor < gate->literal_length[i] ? anchor : 0;
    }
}

static int compile(const struct fdl_level_pattern *source, struct compiled_pattern *pattern)
{
    read_gate(source, &pattern->gate);
    return regcomp(&pattern->regex, source->pattern, REG_EXTENDED | REG_NOSUB);
}

static int compile_all(void)
{
    int failed = 0;
    for (int i = 0; i < PATTERN_COUNT; i++)
        failed |= compile(&fdl_level_patterns[i], &patterns[i]);
    failed |= compile(&fdl_traceback_start, &traceback_start);
    failed |= compile(&fdl_traceback_inside, &traceback_inside);
    return failed ? -1 : 1;
}

/* text without SGR sequences (ESC [ digits and ';' m) into out; vLLM colours its level
 * names.  Returns the length. */
static size_t drop_colours(const unsigned char *text, size_t length, char *out)
{
    size_t used = 0;
    for (size_t i = 0; i < length; i++) {
        if (text[i] == 0x1b && i + 1 < length && text[i + 1] == '[') {
            size_t end = i + 2;
            while (end < length && ((text[end] >= '0' && text[end] <= '9') || text[end] == ';'))
                end++;
            if (end < length && text[end] == 'm') {
                i = end;
                continue;
            }
        }
        out[used++] = (char)text[i];
    }
    return used;
}

/* Does text hold the gate's literal i? */
static int holds(const struct gate *gate, int i, const uint8_t *text, size_t length)
{
    size_t n = gate->literal_length[i], anchor = gate->anchor[i];
    const char *literal = gate->literal[i];
    if (length < n)
        return 0;
    if (gate->at_start[i])
        return memcmp(text, literal, n) == 0;
    const uint8_t *at = text + anchor, *last = text + length - n + anchor;
    while (at <= last && (at = memchr(at, literal[anchor], (size_t)(last - at) + 1)) != NULL) {
        if (memcmp(at - anchor, literal, n) == 0)
            return 1;
        at++;
    }
    return 0;
}

/* Can the pattern match text?  0 only when it cannot (the gate's shapes and literals are
 * derived from the pattern by _levels.gate). */
static int passes(const struct gate *gate, const uint8_t *text, size_t length)
{
    if (gate->shape_count > 0) {
        if (length == 0 || !gate->first[text[0]])
            return 0;
        int fits = 0;
        for (int s = 0; s < gate->shape_count && !fits; s++) {
            int p = 0;
            while (p < gate->shape_length[s] && (size_t)p < length &&
                   gate->sets[s][p][text[p] / 32] & (1u << (text[p] % 32)))
                p++;
            fits = p == gate->shape_length[s];
        }
        if (!fits)
            return 0;
    }
    if (gate->literal_count > 0) {
        for (int i = 0; i < gate->literal_count; i++)
            if (holds(gate, i, text, length))
                return 1;
        return 0;
    }
    return 1;
}

/* REG_STARTEND: text need not end in a NUL. */
static int matches(const struct compiled_pattern *pattern, const char *text, size_t length)
{
    if (!passes(&pattern->gate, (const uint8_t *)text, length))
        return 0;
    regmatch_t whole = {.rm_so = 0, .rm_eo = (regoff_t)length};
    return regexec(&pattern->regex, text, 1, &whole, REG_STARTEND) == 0;
}

/* The level of one line, as _message.level_of gives it: the first at-start pattern in
 * the table's order, else the highest level whose anywhere pattern matches (the table
 * lists them from the lowest level up). */
static int level_of_plain(const char *text, size_t length)
{
    for (int i = 0; i < PATTERN_COUNT; i++)
        if (!fdl_level_patterns[i].anywhere &&
            matches(&patterns[i], text, length))
            return fdl_level_patterns[i].level;
    for (int i = PATTERN_COUNT - 1; i >= 0; i--)
        if (fdl_level_patterns[i].anywhere &&
            matches(&patterns[i], text, length))
            return fdl_level_patterns[i].level;
    return 0;
}

int fdl_level_of(const unsigned char *text, size_t length, int *in_traceback)
{
    if (compiled == 0)
        compiled = compile_all();
    if (compiled < 0)
        return -1;
    /* The patterns see the text up to its first NUL (as a C string) and at most a record's
     * payload, without colours: copied only when it has any. */
    const unsigned char *nul = memchr(text, '\0', length);
    if (nul != NULL)
        length = (size_t)(nul - text);
    if (length > FDL_PAYLOAD_MAX_RAW)
        length = FDL_PAYLOAD_MAX_RAW;
    char copy[FDL_PAYLOAD_MAX_RAW];
    const char *plain = (const char *)text;
    if (memchr(text, 0x1b, length) != NULL) {
        length = drop_colours(text, length, copy);
        plain = copy;
    }
    if (*in_traceback) {
        *in_traceback = matches(&traceback_inside, plain, length);
        return FDL_LEVEL_TRACEBACK;
    }
    if (matches(&traceback_start, plain, length)) {
        *in_traceback = 1;
        return FDL_LEVEL_TRACEBACK;
    }
    return level_of_plain(plain, length);
}
