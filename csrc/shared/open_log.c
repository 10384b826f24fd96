/*
 * open_log.c - opening the log file without being tricked into writing
 * somewhere else.
 * Built into both binaries: the cffi extension (skyrl_fdlog._fdlog) and skyrl-fdlog-helper.
 *
 * The file is created with the caller's mode (skyrl_fdlog's default 0640) and
 * missing directories with the same mode plus search permission wherever it
 * gives read permission (0640 -> 0750, 0644 -> 0755), both masked by the
 * umask; existing ones keep theirs.  The file is opened O_APPEND|O_NOFOLLOW.
 * Refused, with the culprit path reported:
 *   - the log file as a symlink (O_NOFOLLOW), with other hard links, or not a
 *     regular file;
 *   - a directory component that is not a directory;
 *   - inside a sticky world-writable directory such as /tmp, a directory,
 *     symlink or log file owned by another user (not root): the classic
 *     way to make someone else's program write into a file you control.
 *
 * Also here: fdl_filesystem_facts, what appends to the opened log need on the
 * filesystem it lives on (a lock; whether a large write stays whole), for the
 * extension's fdl_needs_lock and the helper's writer.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "fdlog.h"
#include "internal.h"

static int refuse(struct fdl_open_result *result, int refusal, const char *culprit, size_t length,
                  int owner, int error)
{
    result->refusal = refusal;
    result->owner_uid = owner;
    if (length >= sizeof result->culprit)
        length = sizeof result->culprit - 1;
    memcpy(result->culprit, culprit, length);
    result->culprit[length] = '\0';
    return -error;
}

static int sticky_world_writable(const struct stat *st)
{
    return S_ISDIR(st->st_mode) && (st->st_mode & S_ISVTX) && (st->st_mode & S_IWOTH);
}

static int foreign(uid_t owner)
{
    return owner != geteuid() && owner != 0;
}

/* Make sure path[0..length) is a directory we may trust, creating it if missing. */
static int ensure_directory(const char *path, size_t length, mode_t mode, const struct stat *parent,
                            struct stat *st, struct fdl_open_result *result)
{
    char component[4096];
    if (length >= sizeof component)
        return refuse(result, FDL_SYSCALL, path, length, -1, ENAMETOOLONG);
    memcpy(component, path, length);
    component[length] = '\0';
    if (lstat(component, st) != 0) {
        if (errno != ENOENT)
            return refuse(result, FDL_SYSCALL, path, length, -1, errno);
        if (mkdir(component, mode) != 0 && errno != EEXIST)
            return refuse(result, FDL_SYSCALL, path, length, -1, errno);
        if (lstat(component, st) != 0)
            return refuse(result, FDL_SYSCALL, path, length, -1, errno);
    }
    int guarded = parent != NULL && sticky_world_writable(parent);
    if (S_ISLNK(st->st_mode)) {
        if (guarded && foreign(st->st_uid))
            return refuse(result, FDL_SYMLINK, path, length, (int)st->st_uid, ELOOP);
        if (stat(component, st) != 0)
            return refuse(result, FDL_SYSCALL, path, length, -1, errno);
    }
    if (!S_ISDIR(st->st_mode))
        return refuse(result, FDL_NOT_DIRECTORY, path, length, -1, ENOTDIR);
    if (guarded && foreign(st->st_uid))
        return refuse(result, FDL_FOREIGN_DIRECTORY, path, length, (int)st->st_uid, EPERM);
    return 0;
}

/* Walk the directory part of path from the root, checking each component. */
static int ensure_parents(const char *path, size_t directory_length, mode_t mode,
                          struct stat *parent, struct fdl_open_result *result)
{
    struct stat previous, current;
    int have_previous = 0;
    size_t start = path[0] == '/' ? 1 : 0;
    if (start == 1) {
        if (stat("/", &previous) != 0)
            return refuse(result, FDL_SYSCALL, "/", 1, -1, errno);
        have_previous = 1;
    } else if (stat(".", &previous) == 0) {
        have_previous = 1;
    }
    for (size_t i = start; i <= directory_length; i++) {
        if (i < directory_length && path[i] != '/')
            continue;
        if (i == 0 || path[i - 1] == '/')
            continue; /* repeated slashes */
        int rc = ensure_directory(path, i, mode, have_previous ? &previous : NULL, &current,
                                  result);
        if (rc != 0)
            return rc;
        previous = current;
        have_previous = 1;
    }
    *parent = previous;
    return have_previous ? 0 : refuse(result, FDL_SYSCALL, ".", 1, -1, ENOENT);
}

int fdl_open_log(const char *path, int flags, int mode, struct fdl_open_result *result)
{
    memset(result, 0, sizeof *result);
    result->owner_uid = -1;
    size_t length = strlen(path);
    if (length == 0 || path[length - 1] == '/')
        return refuse(result, FDL_NOT_REGULAR, path, length, -1, EISDIR);
    const char *slash = strrchr(path, '/');
    struct stat parent;
    mode_t file_mode = (mode_t)mode & 0777, directory_mode = file_mode | ((file_mode & 0444) >> 2);
    int rc = ensure_parents(path, slash ? (size_t)(slash - path) : 0, directory_mode, &parent,
                            result);
    if (rc != 0)
        return rc;

    /* O_NONBLOCK: opening a planted FIFO must not hang; cleared below. */
    int open_flags = O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK;
    if (flags & FDL_OPEN_EXCLUSIVE)
        open_flags |= O_EXCL;
    int fd = open(path, open_flags, file_mode);
    if (fd < 0) {
        int error = errno;
        struct stat st;
        if (error == ELOOP || (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)))
            return refuse(result, FDL_SYMLINK, path, length, -1, ELOOP);
        return refuse(result, FDL_SYSCALL, path, length, -1, error);
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int error = errno;
        close(fd);
        return refuse(result, FDL_SYSCALL, path, length, -1, error);
    }
    int refusal = FDL_OK, error = 0;
    if (!S_ISREG(st.st_mode))
        refusal = FDL_NOT_REGULAR, error = EINVAL;
    else if (st.st_nlink > 1)
        refusal = FDL_HARD_LINK, error = EMLINK;
    else if (sticky_world_writable(&parent) && foreign(st.st_uid))
        refusal = FDL_FOREIGN_FILE, error = EPERM;
    else if (fcntl(fd, F_SETFL, O_APPEND) != 0)
        refusal = FDL_SYSCALL, error = errno;
    if (refusal != FDL_OK) {
        close(fd);
        return refuse(result, refusal, path, length, (int)st.st_uid, error);
    }
    return fd;
}

/* What appends to a file on each filesystem need, by statfs magic number
 * (linux/magic.h and the vendors); a filesystem not listed gets neither fact.
 * Needs a lock: O_APPEND alone does not keep appends from several machines
 * whole.  Keeps appends whole: the inode lock is held for the whole write, so a
 * writev of many records is never torn by another appender
 * (tests/test_core_large_appends.py shows it on these). */
static const struct {
    unsigned long magic;
    int facts;
} FILESYSTEMS[] = {
    {0xEF53, FDL_FS_KEEPS_APPENDS_WHOLE},     /* ext4 (ext2, ext3) */
    {0x01021994, FDL_FS_KEEPS_APPENDS_WHOLE}, /* tmpfs */
    {0x6969, FDL_FS_NEEDS_LOCK},              /* NFS */
    {0xFF534D42, FDL_FS_NEEDS_LOCK},          /* CIFS */
    {0xFE534D42, FDL_FS_NEEDS_LOCK},          /* SMB2 */
    {0x517B, FDL_FS_NEEDS_LOCK},              /* SMB */
    {0x0BD00BD0, FDL_FS_NEEDS_LOCK},          /* Lustre */
    {0x47504653, FDL_FS_NEEDS_LOCK},          /* GPFS */
    {0x19830326, FDL_FS_NEEDS_LOCK},          /* BeeGFS */
    {0x00C36400, FDL_FS_NEEDS_LOCK},          /* CephFS */
    {0x65735546, FDL_FS_NEEDS_LOCK},          /* FUSE: GlusterFS, and the rest */
    {0x01021997, FDL_FS_NEEDS_LOCK},          /* 9p */
    {0x5346414F, FDL_FS_NEEDS_LOCK},          /* AFS */
    {0x7461636F, FDL_FS_NEEDS_LOCK},          /* OCFS2 */
    {0x01161970, FDL_FS_NEEDS_LOCK},          /* GFS2 */
};

int fdl_filesystem_facts(int fd)
{
    struct statfs st;
    if (fstatfs(fd, &st) != 0)
        return -errno;
    for (size_t i = 0; i < sizeof FILESYSTEMS / sizeof FILESYSTEMS[0]; i++)
        if ((unsigned long)(unsigned int)st.f_type == FILESYSTEMS[i].magic)
            return FILESYSTEMS[i].facts;
    return 0;
}
