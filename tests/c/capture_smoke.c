/*
 * capture_smoke.c - tests only, never shipped: drives the whole C core
 * without Python, for the sanitizer build (tests/test_core_build.py): open the
 * log, start the helper, capture fds 1 and 2, write awkward input from this
 * process and a child, release, wait for the helper, and run the assembler
 * test entry (assembler_entry.c, linked in by the test).
 *
 *     capture_smoke HELPER LOG
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "assembler_entry.h"
#include "fdlog.h"

static void write_all(int fd, const char *data, size_t length)
{
    while (length > 0) {
        ssize_t n = write(fd, data, length);
        if (n <= 0)
            exit(3);
        data += n;
        length -= (size_t)n;
    }
}

static void awkward_output(void)
{
    static char big[100000];
    memset(big, 'x', sizeof big);
    big[500] = '\0';
    write_all(1, big, sizeof big);       /* a long line with a NUL, split into fragments */
    write_all(1, "\n", 1);
    for (int i = 0; i < 200; i++)
        write_all(2, "\rbar \xff\xfe", 7); /* carriage-return storm with invalid UTF-8 */
    write_all(2, "\r\n", 2);
    printf("stdio line %d\n", 42);       /* buffered stdio, flushed by fdl_release */
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    struct fdl_open_result result;
    int log = fdl_open_log(argv[2], 0, 0640, &result);
    int out_read, out_write, err_read, err_write, status, helper;
    if (log < 0 || fdl_channel_open(&out_read, &out_write) || fdl_channel_open(&err_read, &err_write))
        return 4;
    struct fdl_helper_settings settings = {
        .helper_path = argv[1], .path = argv[2], .name = "smoke", .node = "node",
        .idle_ms = 100, .snapshot_ms = 1000, .buffer_bytes = 1 << 20};
    if (fdl_helper_start(&settings, log, out_read, err_read, -1, -1, &status, &helper, NULL, 0) != 0)
        return 5;
    close(out_read);
    close(err_read);
    int saved[2];
    if (fdl_capture(out_write, err_write, saved) != 0)
        return 6;
    close(out_write);
    close(err_write);
    pid_t child = fork();
    if (child == 0) {
        awkward_output();
        fflush(NULL);
        _exit(0);
    }
    awkward_output();
    waitpid(child, NULL, 0);
    if (fdl_release(saved) != 0)
        return 7;
    char said[64];
    while (read(status, said, sizeof said) > 0)
        ; /* EOF: the helper has written everything and exited */

    static const unsigned char input[] = "a\r\nb\rc\n\0\xff";
    long offsets[] = {0, 3, 6}, lengths[] = {3, 3, 4};
    int pids[] = {1, 2, 1}, streams[] = {1, 2, 1};
    long long times[] = {1, 2, 3};
    unsigned char records[4096];
    long size = fdl_test_assemble("t", "n", 0, 0, input, offsets, lengths, pids, streams, times, 3,
                                  1, records, sizeof records);
    printf("helper %d done, assembler wrote %ld bytes\n", helper, size);
    return size > 0 ? 0 : 8;
}
