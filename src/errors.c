/*
 * errors.c - return codes and the thread-local error message.
 *
 * Every failure goes through tsnap__err, which formats one line naming the
 * file, the tensor and the cause.  HDF5 failures fold the innermost entry
 * of HDF5's own error stack into that line (HDF5 keeps one stack per
 * thread), so the caller sees "file signature not found" rather than the
 * outermost "unable to open file".
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define MSG_LEN 1024

static _Thread_local char tls_msg[MSG_LEN];
static _Thread_local bool tls_h5_quiet;

const char *tsnap_version(void) { return TSNAP_VERSION_STRING; }

const char *tsnap_errmsg(void) { return tls_msg; }

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
    if (!tls_h5_quiet) {
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        tls_h5_quiet = true;
    }
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
    /* One line: messages may quote HDF5's text, which can hold newlines. */
    for (char *p = tls_msg; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
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

struct h5walk {
    char desc[256];
    bool damaged; /* HDF5 found the file's bytes wrong */
    bool system;  /* the operating system failed a read or write */
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
    struct h5walk w = {{0}, false, false};
    va_list ap;

    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, h5walk_cb, &w);
    H5Eclear2(H5E_DEFAULT);
    /* A failed read because a metadata checksum or a filter (inflate,
     * fletcher32, lzf) rejected the stored bytes is a damaged file, not an
     * I/O failure.  (HDF5 says "unable to load metadata" when a metadata
     * checksum or signature is wrong.) */
    if (code == TSNAP_EIO && w.damaged && !w.system)
        code = TSNAP_EFORMAT;
    va_start(ap, fmt);
    vformat(code, file, tensor, fmt, ap);
    va_end(ap);
    if (w.desc[0]) {
        size_t n = strlen(tls_msg);
        if (n < MSG_LEN)
            snprintf(tls_msg + n, MSG_LEN - n, " (HDF5: %s)", w.desc);
        for (char *p = tls_msg; *p; p++)
            if (*p == '\n' || *p == '\r')
                *p = ' ';
    }
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
    snprintf(buf, len, TSNAP_CHECKSUM_PREFIX "%016llx", (unsigned long long)h);
}
