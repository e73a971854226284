/*
 * errors.c - return codes and the thread-local error message.
 *
 * Every failure goes through tsnap__err, which formats one line naming the
 * file, the tensor and the cause.  HDF5 failures fold the innermost entry
 * of HDF5's own error stack into that line (HDF5 keeps one stack per
 * thread), so the caller sees "file signature not found" rather than the
 * outermost "unable to open file".  A failure of the operating system
 * (a file driver's read, write, open or flush) is told in the system's
 * words instead, and its errno is kept for tsnap_errno().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define MSG_LEN 1024

static _Thread_local char tls_msg[MSG_LEN];
static _Thread_local bool tls_h5_quiet;
static _Thread_local int tls_errno;         /* of the last failure; 0: none */
static _Thread_local int tls_driver_errno;  /* what the file driver saw */
static _Thread_local char tls_path[MSG_LEN]; /* the file of that failure */

const char *tsnap_version(void) { return TSNAP_VERSION_STRING; }

const char *tsnap_errmsg(void) { return tls_msg; }

int tsnap_errno(void) { return tls_errno; }

const char *tsnap_errpath(void) { return tls_path; }

void tsnap__set_errno(int errnum, const char *file)
{
    tls_errno = errnum;
    if (file)
        snprintf(tls_path, sizeof tls_path, "%s", file);
}

void tsnap__driver_errno(int errnum) { tls_driver_errno = errnum; }

const char *tsnap_strerror(int code)
{
    switch (code) {
    case TSNAP_OK: return "success";
    case TSNAP_EINVAL: return "invalid argument";
    case TSNAP_ENOTFOUND: return "not found";
    case TSNAP_EEXISTS: return "already exists";
    case TSNAP_EFORMAT: return "not a valid snapshot file";
    case TSNAP_ECHECKSUM: return "checksum mismatch";
    case TSNAP_ENOTMAPPABLE: return "not mappable";
    case TSNAP_ENOCUDA: return "CUDA not available";
    case TSNAP_ECUDA: return "CUDA error";
    case TSNAP_EIO: return "I/O error";
    case TSNAP_ENOMEM: return "out of memory";
    case TSNAP_ETYPE: return "unsupported data type";
    case TSNAP_ESTATE: return "invalid state";
    case TSNAP_ENOFILTER: return "HDF5 filter not available";
    default: return "unknown error";
    }
}

void tsnap__begin(void)
{
    tls_msg[0] = '\0';
    tls_errno = tls_driver_errno = 0;
    tls_path[0] = '\0';
    if (!tls_h5_quiet) {
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        tls_h5_quiet = true;
    }
}

/* One line: messages may quote HDF5's text, which can hold newlines. */
static void one_line(void)
{
    for (char *p = tls_msg; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
}

/* Appends ": <the system's words for errnum>" to the message. */
static void append_strerror(int errnum)
{
    size_t n = strlen(tls_msg);
    if (n < MSG_LEN)
        snprintf(tls_msg + n, MSG_LEN - n, ": %s", strerror(errnum));
}

static int vformat(int code, const char *file, const char *tensor, const char *fmt, va_list ap)
{
    size_t n = 0;
    int k;

    if (file && *file) {
        k = snprintf(tls_msg, MSG_LEN, "%s: ", file);
        n = k > 0 ? (size_t)k : 0;
    }
    if (tensor && *tensor && n < MSG_LEN) {
        k = snprintf(tls_msg + n, MSG_LEN - n, "tensor '%s': ", tensor);
        n += k > 0 ? (size_t)k : 0;
    }
    if (n < MSG_LEN)
        vsnprintf(tls_msg + n, MSG_LEN - n, fmt, ap);
    one_line();
    return code;
}

int tsnap__err(int code, const char *file, const char *tensor, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vformat(code, file, tensor, fmt, ap);
    va_end(ap);
    return code;
}

int tsnap__syserr(int code, int errnum, const char *file, const char *tensor, const char *fmt,
                  ...)
{
    va_list ap;
    va_start(ap, fmt);
    vformat(code, file, tensor, fmt, ap);
    va_end(ap);
    append_strerror(errnum);
    tsnap__set_errno(errnum, file);
    return code;
}

struct h5walk {
    char desc[256];
    bool damaged; /* HDF5 found the file's bytes wrong */
    bool system;  /* the operating system failed a read or write */
    int errnum;   /* the errno a file driver quoted ("errno = 28"), or 0 */
};

static herr_t h5walk_cb(unsigned n, const H5E_error2_t *e, void *data)
{
    struct h5walk *w = data;
    (void)n;
    if (e->min_num == H5E_CANTLOAD || e->maj_num == H5E_PLINE)
        w->damaged = true;
    /* HDF5 tags many layers' errors H5E_IO/H5E_READERROR, the filter
     * pipeline's too: only the file drivers (H5FD*) speak for the system. */
    if (e->maj_num == H5E_VFL || (e->func_name && strncmp(e->func_name, "H5FD", 4) == 0))
        w->system = true;
    /* HDF5's file drivers quote the system's errno in their text. */
    const char *at = e->desc ? strstr(e->desc, "errno = ") : NULL;
    if (at && w->system) {
        long v = strtol(at + 8, NULL, 10);
        if (v > 0 && v < 4096)
            w->errnum = (int)v;
    }
    /* Walking downward, the last entry is the innermost: the cause. */
    if (e->desc && *e->desc) {
        snprintf(w->desc, sizeof w->desc, "%s", e->desc);
    } else {
        char *minor = H5Eget_minor(e->min_num);
        if (minor) {
            snprintf(w->desc, sizeof w->desc, "%s", minor);
            H5free_memory(minor);
        }
    }
    return 0;
}

int tsnap__h5err(int code, const char *file, const char *tensor, const char *fmt, ...)
{
    struct h5walk w = {{0}, false, false, 0};
    va_list ap;

    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, h5walk_cb, &w);
    H5Eclear2(H5E_DEFAULT);
    /* A failed read because a metadata checksum or a filter (inflate,
     * fletcher32, lzf) rejected the stored bytes is a damaged file, not an
     * I/O failure.  (HDF5 says "unable to load metadata" when a metadata
     * checksum or signature is wrong.) */
    if (code == TSNAP_EIO && w.damaged && !w.system)
        code = TSNAP_EFORMAT;
    /* A system failure is told in the system's words, not HDF5's record
     * of the call (time, descriptor, buffer address...).  The driver's
     * own errno (vfd.c) stands in where the text did not quote one. */
    if (!w.errnum && w.system)
        w.errnum = tls_driver_errno;
    if (w.errnum && (code == TSNAP_EIO || code == TSNAP_EFORMAT || code == TSNAP_ENOMEM))
        code = TSNAP_EIO;
    va_start(ap, fmt);
    vformat(code, file, tensor, fmt, ap);
    va_end(ap);
    if (w.errnum) {
        append_strerror(w.errnum);
        tsnap__set_errno(w.errnum, file);
    } else if (w.desc[0]) {
        size_t n = strlen(tls_msg);
        if (n < MSG_LEN)
            snprintf(tls_msg + n, MSG_LEN - n, " (HDF5: %s)", w.desc);
        one_line();
    }
    tls_driver_errno = 0;
    return code;
}

void tsnap__h5close(hid_t id)
{
    if (id < 0)
        return;
    switch (H5Iget_type(id)) {
    case H5I_FILE: H5Fclose(id); break;
    case H5I_GROUP: H5Gclose(id); break;
    case H5I_DATATYPE: H5Tclose(id); break;
    case H5I_DATASPACE: H5Sclose(id); break;
    case H5I_DATASET: H5Dclose(id); break;
    case H5I_ATTR: H5Aclose(id); break;
    case H5I_GENPROP_LST: H5Pclose(id); break;
    default: break;
    }
}

void tsnap__checksum_format(uint64_t h, char *buf, size_t len)
{
    /* By hand rather than snprintf: a load from the index formats one per
     * tensor (table.c). */
    static const char hex[] = "0123456789abcdef";
    const size_t n = sizeof TSNAP_CHECKSUM_PREFIX - 1;
    char text[sizeof TSNAP_CHECKSUM_PREFIX + 16];
    memcpy(text, TSNAP_CHECKSUM_PREFIX, n);
    for (int i = 15; i >= 0; i--, h >>= 4)
        text[n + (size_t)i] = hex[h & 15];
    text[n + 16] = '\0';
    if (len > 0) {
        size_t k = len - 1 < n + 16 ? len - 1 : n + 16;
        memcpy(buf, text, k);
        buf[k] = '\0';
    }
}
