/*
 * c_writer.c - a C writer as NCCL or gloo are: printf in a loop through stdio's default
 * buffering (fully buffered, 4 KiB or more, when stdout is not a terminal), so the
 * write(2)s end mid-line.  Compiled at run time by benchmarks/harness.py.
 *
 * usage: c_writer WID SIZE LINES [line]   (lines as benchmarks/bench_lines.py makes them;
 *        "line": setvbuf _IOLBF, one write(2) per line, to load the helper at C speed)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 5)
        return 2;
    if (argc == 5 && strcmp(argv[4], "line") == 0)
        setvbuf(stdout, NULL, _IOLBF, 0);
    int wid = atoi(argv[1]);
    int size = atoi(argv[2]);
    long lines = atol(argv[3]);
    int n = size - 16 - 11 - 1; /* head "W003 S000001234 ", tail " E000001234", '\n' */
    if (n < 1)
        return 2;
    char unit[16];
    snprintf(unit, sizeof unit, "%03d.", wid);
    size_t unit_length = strlen(unit);
    char *filler = malloc((size_t)n + 1);
    if (filler == NULL)
        return 1;
    for (int i = 0; i < n; i++)
        filler[i] = unit[(size_t)i % unit_length];
    filler[n] = '\0';
    for (long seq = 0; seq < lines; seq++)
        printf("W%03d S%09ld %s E%09ld\n", wid, seq, filler, seq);
    return fflush(stdout) == 0 ? 0 : 1;
}
