/*
 * levels.c - the level of a line, from the one table of skyrl_fdlog/levels.json
 * (csrc/levels.h is generated from it at every build; the reader reads the same
 * file), so the helper and the reader classify alike.  See _levels.py and
 * _message.py for the rules; a test runs both on the same samples.
 */
#include <regex.h>
#include <string.h>

#include "fdlog.h"
#include "internal.h"
#define FDL_LEVELS_TABLE
#include "levels.h"

enum { PATTERN_COUNT = sizeof fdl_level_patterns / sizeof fdl_level_patterns[0] };

static regex_t patterns[PATTERN_COUNT], traceback_start, traceback_inside;
static int compiled; /* 1 ready, -1 a pattern did not compile */

static int compile_all(void)
{
    int failed = 0;
    for (int i = 0; i < PATTERN_COUNT; i++)
        failed |= regcomp(&patterns[i], fdl_level_patterns[i].pattern, REG_EXTENDED | REG_NOSUB);
    failed |= regcomp(&traceback_start, fdl_traceback_start, REG_EXTENDED | REG_NOSUB);
    failed |= regcomp(&traceback_inside, fdl_traceback_inside, REG_EXTENDED | REG_NOSUB);
    return failed ? -1 : 1;
}

/* text without SGR sequences (ESC [ digits and ';' m), cut at a NUL (regexec reads C
 * strings) and to the size of out; vLLM colours its level names. */
static void plain_text(const unsigned char *text, size_t length, char *out, size_t size)
{
    size_t used = 0;
    for (size_t i = 0; i < length && used + 1 < size && text[i] != '\0'; i++) {
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
    out[used] = '\0';
}

static int matches(const regex_t *pattern, const char *text)
{
    return regexec(pattern, text, 0, NULL, 0) == 0;
}

/* The level of one line, as _message.level_of gives it: the first at-start pattern in
 * the table's order, else the highest level whose anywhere pattern matches (the table
 * lists them from the lowest level up). */
static int level_of_plain(const char *text)
{
    for (int i = 0; i < PATTERN_COUNT; i++)
        if (!fdl_level_patterns[i].anywhere && matches(&patterns[i], text))
            return fdl_level_patterns[i].level;
    for (int i = PATTERN_COUNT - 1; i >= 0; i--)
        if (fdl_level_patterns[i].anywhere && matches(&patterns[i], text))
            return fdl_level_patterns[i].level;
    return 0;
}

int fdl_level_of(const unsigned char *text, size_t length, int *in_traceback)
{
    if (compiled == 0)
        compiled = compile_all();
    if (compiled < 0)
        return -1;
    char plain[FDL_PAYLOAD_MAX_RAW + 1];
    plain_text(text, length, plain, sizeof plain);
    if (*in_traceback) {
        *in_traceback = matches(&traceback_inside, plain);
        return FDL_LEVEL_TRACEBACK;
    }
    if (matches(&traceback_start, plain)) {
        *in_traceback = 1;
        return FDL_LEVEL_TRACEBACK;
    }
    return level_of_plain(plain);
}
