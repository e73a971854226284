/*
 * fileio.c - the operating-system side of an atomic commit: temporary
 * names beside the final one, fsync of files and directories, and the
 * replaced file's last close off the caller's thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
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
        return tsnap__syserr(TSNAP_EIO, errno, file, NULL, "cannot open the %s for fsync",
                             directory ? "directory" : "file");
    if (fsync(fd) < 0 && !(directory && (errno == EINVAL || errno == EBADF)))
        err = tsnap__syserr(TSNAP_EIO, errno, file, NULL, "fsync of the %s failed",
                            directory ? "directory" : "file");
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

/* ---- replacing a file ----------------------------------------------
 *
 * rename() over an existing file costs the caller twice on Linux: ext4
 * (auto_da_alloc) starts the write-back of the whole new file inside
 * rename(), and the old file's last link goes, so its page cache is freed
 * there too (together ~0.5-1 s for 1 GiB).  Exchanging the two names
 * (RENAME_EXCHANGE, as atomic as rename) does neither: the old file then
 * has the temporary name, which is unlinked while the file is held open,
 * and its last close runs on a closer thread of its own.  At most
 * RETIRE_MAX old files wait for it; a replace that finds them all
 * pending waits for one.  Where names cannot be exchanged, rename()
 * with the old file held open still keeps the teardown out of it.
 *
 * The closer holds an old file until the next save under the same name
 * begins, or for 30 s (RETIRE_LINGER_NS): the pages it frees then are
 * taken at once by that save's writes, as a truncating np.save reuses
 * its file's pages.  Pages freed early sit idle, and idle memory of a
 * virtual machine may go back to its host, to be slow to touch again
 * (~5-7x on the machines measured: a 1 GiB save over the same name ran
 * 1.2-1.4x np.save's speed with the wait, 0.5x without).  The old file's
 * space comes back as late as that.
 */

#define RETIRE_MAX 4
#define RETIRE_LINGER_NS 30000000000LL

static pthread_mutex_t retire_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t retire_work = PTHREAD_COND_INITIALIZER; /* a file to close */
static pthread_cond_t retire_room = PTHREAD_COND_INITIALIZER; /* a place in the queue */
static struct {
    int fd;
    int64_t due;   /* when to close it (monotonic ns) */
    uint64_t name; /* the hash of the name it had */
} retire_q[RETIRE_MAX];
static int retire_queued;  /* in retire_q, oldest first */
static int retire_closing; /* taken by the closer, not closed yet */
static bool retire_started;
static pthread_once_t retire_once = PTHREAD_ONCE_INIT;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *retire_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&retire_mu);
    for (;;) {
        while (!retire_queued)
            pthread_cond_wait(&retire_work, &retire_mu);
        /* the one due first waits for its time, or for a full queue */
        int i = 0;
        for (int j = 1; j < retire_queued; j++)
            i = retire_q[j].due < retire_q[i].due ? j : i;
        if (retire_queued < RETIRE_MAX && now_ns() < retire_q[i].due) {
            struct timespec until = {(time_t)(retire_q[i].due / 1000000000LL),
                                     (long)(retire_q[i].due % 1000000000LL)};
            pthread_cond_timedwait(&retire_work, &retire_mu, &until);
            continue;
        }
        int fd = retire_q[i].fd, rest = --retire_queued - i;
        memmove(retire_q + i, retire_q + i + 1, (size_t)rest * sizeof *retire_q);
        retire_closing++;
        pthread_mutex_unlock(&retire_mu);
        close(fd);
        pthread_mutex_lock(&retire_mu);
        retire_closing--;
        pthread_cond_broadcast(&retire_room);
    }
    return NULL;
}

static void retire_cond_init(void);

/* fork() holds the queue still; the child, which has no closer, closes
 * its copies of the queued descriptors itself (the one being closed at
 * the fork stays open in the child: its number may be reused already). */
static void retire_prepare(void) { pthread_mutex_lock(&retire_mu); }
static void retire_parent(void) { pthread_mutex_unlock(&retire_mu); }
static void retire_child(void)
{
    for (int i = 0; i < retire_queued; i++)
        close(retire_q[i].fd);
    retire_queued = retire_closing = 0;
    retire_started = false;
    pthread_mutex_init(&retire_mu, NULL);
    retire_cond_init();
}

/* The closer's deadlines are monotonic. */
static void retire_cond_init(void)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&retire_work, &attr);
    pthread_condattr_destroy(&attr);
    pthread_cond_init(&retire_room, NULL);
}

static void retire_register(void)
{
    retire_cond_init();
    pthread_atfork(retire_prepare, retire_parent, retire_child);
}

/* FNV-1a: which queued file a name had. */
static uint64_t name_hash(const char *path)
{
    uint64_t h = 14695981039346656037ULL;
    for (const unsigned char *p = (const unsigned char *)path; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h;
}

void tsnap__save_begins(const char *path)
{
    uint64_t h;
    bool due = false;

    if (!__atomic_load_n(&retire_started, __ATOMIC_RELAXED))
        return; /* nothing was ever retired */
    h = name_hash(path);
    pthread_mutex_lock(&retire_mu);
    for (int i = 0; i < retire_queued; i++) {
        if (retire_q[i].name == h) {
            retire_q[i].due = 0;
            due = true;
        }
    }
    if (due)
        pthread_cond_signal(&retire_work);
    pthread_mutex_unlock(&retire_mu);
}

/* The closer, started on first use (with retire_mu held); false if no
 * thread can be started. */
static bool retire_start(void)
{
    pthread_t th;
    pthread_attr_t attr;
    sigset_t all, old;
    int rc;

    if (retire_started)
        return true;
    if (pthread_attr_init(&attr) != 0)
        return false;
    /* The closer takes no signals: they go to the program's threads. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 << 10);
    rc = pthread_create(&th, &attr, retire_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    __atomic_store_n(&retire_started, rc == 0, __ATOMIC_RELAXED);
    return rc == 0;
}

/* Hands fd (-1: nothing), the file replaced under `path`, to the
 * closer; errno is kept. */
static void retire(int fd, const char *path)
{
    int saved = errno;

    if (fd < 0)
        return;
    pthread_once(&retire_once, retire_register);
    pthread_mutex_lock(&retire_mu);
    if (!retire_start()) {
        pthread_mutex_unlock(&retire_mu);
        close(fd); /* no thread: the caller pays, as a plain rename would */
        errno = saved;
        return;
    }
    while (retire_queued + retire_closing >= RETIRE_MAX)
        pthread_cond_wait(&retire_room, &retire_mu);
    retire_q[retire_queued].fd = fd;
    retire_q[retire_queued].due = now_ns() + RETIRE_LINGER_NS;
    retire_q[retire_queued++].name = name_hash(path);
    pthread_cond_signal(&retire_work);
    pthread_mutex_unlock(&retire_mu);
    errno = saved;
}

/* The regular file under `path`, opened so that its teardown waits for
 * its last close; -1 when there is none, another name keeps it, or it
 * cannot be opened (its teardown then happens where it would anyway). */
static int retire_open(const char *path)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

    if (fd < 0)
        return -1;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
        close(fd);
        return -1;
    }
    return fd;
}

int tsnap__replace(const char *tmp, const char *path)
{
    struct stat st;
    int old;

#ifdef RENAME_EXCHANGE
    if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) &&
        renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_EXCHANGE) == 0) {
        old = retire_open(tmp); /* the old file, now under the temporary name */
        unlink(tmp);
        retire(old, path);
        return 0;
    }
#else
    (void)st;
#endif
    old = retire_open(path);
    if (rename(tmp, path) < 0) {
        int e = errno;
        if (old >= 0)
            close(old);
        errno = e;
        return -1;
    }
    retire(old, path);
    return 0;
}
