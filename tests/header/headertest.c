/*
 * Compiled as C99 and as C++11 with every warning an error (CMakeLists.txt
 * here): the public header must stand alone, so it comes first, and twice,
 * to exercise its include guard.  The rest touches what a user's code
 * touches: the macros that expand in their code and the public structs.
 */
#include "tsnap.h"
#include "tsnap.h"

int tsnap_headertest(void);

int tsnap_headertest(void)
{
    tsnap_write_options opts = TSNAP_WRITE_OPTIONS_INIT;
    tsnap_tensor_info info;
    tsnap_attr attr;
    tsnap_writer *w = NULL;
    tsnap_reader *r = NULL;
    tsnap_mapping *m = NULL;
    tsnap_dtype dtype = TSNAP_FLOAT32;
    tsnap_codec codec = TSNAP_CODEC_DEFLATE;
    tsnap_map_status status = TSNAP_MAP_OK;
    tsnap_error err = TSNAP_OK;
    tsnap_attr_kind kind = TSNAP_ATTR_NUMERIC;
    size_t chunk = TSNAP_DEFAULT_CHUNK_BYTES;

    opts.codec = codec;
    (void)info;
    (void)attr;
    (void)w;
    (void)r;
    (void)m;
    (void)dtype;
    (void)status;
    (void)kind;
    (void)chunk;
    return (int)opts.version + (int)err + TSNAP_DTYPE_COUNT + TSNAP_MAX_NDIM +
           TSNAP_FORMAT_VERSION + TSNAP_VERSION_MAJOR + TSNAP_VERSION_MINOR +
           TSNAP_VERSION_PATCH + TSNAP_DL_BOOL + TSNAP_DL_FLOAT8_E4M3FN +
           TSNAP_DL_FLOAT8_E5M2 + (int)sizeof(TSNAP_VERSION_STRING);
}
