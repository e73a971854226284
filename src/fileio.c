/*
 * fileio.c - the operating-system side of an atomic commit: temporary
 * names beside the final one, fsync of files and directories.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* Temporary names keep the final name's directory (so rename is atomic)
 * and hide behind a leading dot and the ".tsnap-tmp" suffix. */
#define TEMP_SUFFIX ".tsnap-tmp"
#define TEMP_BASE_MAX 200 /* leaves room in a 255-byte file name */

static uint64_t random_u64(void)
{
    uint64_t x = 0;
    if (getrandom(&x, sizeof x, GRND_NONBLOCK) != (ssize_t)sizeof x) {
        static _Thread_local uint64_t counter;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        x = ((uint64_t)getpid() << 40) ^ ((uint64_t)ts.tv_nsec << 8) ^ (uint64_t)ts.tv_sec ^
            ++counter;
    }
    return x;
}

int tsnap__temp_path(const char *path, char **out)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t dirlen = slash ? (size_t)(slash - path) + 1 : 0;
    size_t baselen = strlen(base);
    size_t cap;
    char *s;

    *out = NULL;
    if (baselen > TEMP_BASE_MAX)
        baselen = TEMP_BASE_MAX;
    cap = dirlen + 1 + baselen + 1 + 16 + sizeof TEMP_SUFFIX;
    s = malloc(cap);
    if (!s)
        return tsnap__err(TSNAP_ENOMEM, path, NULL, "out of memory");
    snprintf(s, cap, "%.*s.%.*s.%016llx" TEMP_SUFFIX, (int)dirlen, path, (int)baselen, base,
             (unsigned long long)random_u64());
    *out = s;
    return 0;
}

int tsnap__fsync_path(const char *path, bool directory, const char *file)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0));
    int err = 0;
    if (fd < 0)
        return tsnap__err(TSNAP_EIO, file, NULL, "cannot open %s for fsync: %s",
                          directory ? "directory" : "file", strerror(errno));
    if (fsync(fd) < 0 && !(directory && (errno == EINVAL || errno == EBADF)))
        err = tsnap__err(TSNAP_EIO, file, NULL, "fsync of the %s failed: %s",
                         directory ? "directory" : "file", strerror(errno));
    close(fd);
    return err;
}

int tsnap__fsync_dir_of(const char *path, const char *file)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    int err;
    if (!slash)
        return tsnap__fsync_path(".", true, file);
    if (slash == path)
        return tsnap__fsync_path("/", true, file);
    dir = strndup(path, (size_t)(slash - path));
    if (!dir)
        return tsnap__err(TSNAP_ENOMEM, file, NULL, "out of memory");
    err = tsnap__fsync_path(dir, true, file);
    free(dir);
    return err;
}
