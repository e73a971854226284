/*
 * test_lzf_host.c - a program that shares libhdf5 with tsnap and has its
 * own full LZF filter (Debian's h5py does) keeps it: tsnap registers its
 * decode-only one only when none is registered.  A suite of its own, so
 * that its process registers the host filter before any reader opens.
 */
#include <string.h>

#include "internal.h"
#include "testutil.h"

static size_t host_lzf(unsigned flags, size_t cd_nelmts, const unsigned cd_values[],
                       size_t nbytes, size_t *buf_size, void **buf)
{
    (void)flags, (void)cd_nelmts, (void)cd_values, (void)nbytes, (void)buf_size, (void)buf;
    return 0;
}

static const H5Z_class2_t host_class = {
    H5Z_CLASS_T_VERS, TSNAP_LZF_FILTER_ID, 1, 1, "host lzf", NULL, NULL, host_lzf,
};

static void test_a_host_lzf_filter_that_encodes_is_kept_when_a_reader_opens(void)
{
    unsigned int flags = 0;
    tsnap_reader *r = NULL;

    CU_ASSERT_FATAL(H5Zregister(&host_class) >= 0);
    CU_ASSERT_EQUAL_FATAL(tsnap_reader_open(&r, TSNAP_TEST_DATA_DIR "/h5py_lzf.h5"), 0);
    tsnap_reader_free(r);
    CU_ASSERT_FATAL(H5Zget_filter_info(TSNAP_LZF_FILTER_ID, &flags) >= 0);
    CU_ASSERT(flags & H5Z_FILTER_CONFIG_ENCODE_ENABLED);
}

const test_entry lzf_host_tests[] = {
    TEST(test_a_host_lzf_filter_that_encodes_is_kept_when_a_reader_opens),
    TEST_END,
};
