/*
 * A program that uses an installed tsnap: it writes one small tensor into
 * DIR/consumer.h5, reads it back and checks it.  Usage: consumer DIR
 */
#include <stdio.h>
#include <string.h>

#include <tsnap.h>

#define CHECK(call)                                                          \
    do {                                                                     \
        int rc_ = (call);                                                    \
        if (rc_ < 0) {                                                       \
            fprintf(stderr, "consumer: %s: %s: %s\n", #call,                 \
                    tsnap_strerror(rc_), tsnap_errmsg());                    \
            goto done;                                                       \
        }                                                                    \
    } while (0)

int main(int argc, char **argv)
{
    float in[2][3] = {{1.5f, -2.0f, 3.25f}, {4.0f, 0.5f, -6.75f}};
    float out[2][3] = {{0}};
    int64_t shape[2] = {2, 3};
    DLTensor t;
    char path[4096];
    tsnap_writer *w = NULL;
    tsnap_reader *r = NULL;
    int ok = 0;

    if (argc != 2) {
        fprintf(stderr, "usage: consumer DIR\n");
        return 2;
    }
    if (strcmp(tsnap_version(), TSNAP_VERSION_STRING) != 0) {
        fprintf(stderr, "consumer: header %s, library %s\n", TSNAP_VERSION_STRING,
                tsnap_version());
        return 1;
    }
    snprintf(path, sizeof path, "%s/consumer.h5", argv[1]);

    memset(&t, 0, sizeof t);
    t.data = in;
    t.device.device_type = kDLCPU;
    t.ndim = 2;
    t.dtype.code = kDLFloat;
    t.dtype.bits = 32;
    t.dtype.lanes = 1;
    t.shape = shape;

    CHECK(tsnap_writer_create(&w, path, NULL));
    CHECK(tsnap_writer_put(w, "x", &t));
    CHECK(tsnap_writer_commit(w));

    t.data = out;
    CHECK(tsnap_reader_open(&r, path));
    CHECK(tsnap_reader_read(r, "x", NULL, NULL, NULL, &t));
    if (memcmp(in, out, sizeof in) != 0) {
        fprintf(stderr, "consumer: %s: tensor x read back differs\n", path);
        goto done;
    }
    printf("consumer: tsnap %s wrote and read back %s\n", tsnap_version(), path);
    ok = 1;
done:
    tsnap_reader_free(r);
    tsnap_writer_free(w);
    return ok ? 0 : 1;
}
