/*
 * settings.h - the helper's settings, one row each: the one list from which
 * helper_start.c writes the helper's command line ("name=value" per row) and
 * helper.c reads it back.  Defaults live on the Python side only
 * (skyrl_fdlog/_settings.py): the helper requires every row.
 *
 * X(type, name, kind): `type` is the field's type in struct fdl_helper_settings
 * (fdlog.h, written out by hand because cffi cannot read macros; helper_start.c
 * checks at compile time that every row is a field of that type), `kind` is
 * TEXT (a string) or NUMBER (an integer).
 *
 * Adding a setting: a row here, the field in fdlog.h, and a row in
 * skyrl_fdlog/_settings.py for its default and its environment variable.
 */
#ifndef FDLOG_SETTINGS_H
#define FDLOG_SETTINGS_H

#define FDL_HELPER_SETTINGS(X)                                                                  \
    X(const char *, path, TEXT)     /* the log: reopened after logrotate, named in messages */  \
    X(const char *, name, TEXT)     /* actor name in records */                                 \
    X(const char *, node, TEXT)     /* node name in records */                                  \
    X(int, raw, NUMBER)             /* 1: payload only, no prefix */                            \
    X(int, lock, NUMBER)            /* 1: fcntl lock + fdatasync around each batch */           \
    X(int, idle_ms, NUMBER)         /* flush a partial line after this idle time */             \
    X(int, snapshot_ms, NUMBER)     /* at most one carriage-return snapshot per this time */    \
    X(int, gather_us, NUMBER)       /* after a wakeup, let output arrive for up to this long */ \
    X(long, buffer_bytes, NUMBER)   /* output kept in memory while the log cannot be written */ \
    X(long long, max_bytes, NUMBER) /* 0, or records are dropped once the file holds this */    \
    X(int, restarted_after, NUMBER) /* pid of a helper that died, 0 on first start */           \
    X(int, owner, NUMBER)           /* the pid whose own pipes are handed over, 0: none */      \
    X(int, surface, NUMBER)         /* 1: copy error lines to the actor's original stderr */

#define FDL_COUNT_SETTING(type, name, kind) +1
enum { FDL_HELPER_SETTING_COUNT = 0 FDL_HELPER_SETTINGS(FDL_COUNT_SETTING) };
#undef FDL_COUNT_SETTING

#endif
