/*
 * assembler_entry.h - the tests' entry point into the line assembler; built only by the
 * tests (tests/_assembler_entry.py, tests/test_core_build.py), never shipped.
 *
 * Also the cffi cdef of that build (preprocessor lines stripped), as fdlog.h is the
 * extension's: the header and the binding cannot disagree.
 */
#ifndef FDLOG_ASSEMBLER_ENTRY_H
#define FDLOG_ASSEMBLER_ENTRY_H

/* Run the line assembler over chunks of input as the helper would, at fixed times, and
 * write the records to out.  Chunk i is data[offsets[i] .. offsets[i]+lengths[i]) from
 * pids[i] on streams[i] at times_ms[i]: 1 or 2 from a socket, 17 or 18 (16 added) from the
 * owner's pipe; close_at_end flushes as at EOF.
 * Returns the bytes written to out, or -ENOSPC when out is too small. */
long fdl_test_assemble(const char *name, const char *node, int raw, int snapshot_ms,
                       const unsigned char *data, const long *offsets, const long *lengths,
                       const int *pids, const int *streams, const long long *times_ms,
                       long chunk_count, int close_at_end,
                       unsigned char *out, long out_capacity);

#endif
