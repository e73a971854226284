/*
 * main.c - runs the CUnit suites named on the command line (all without
 * arguments) and exits non-zero on any failure.
 *
 * The data are random, seeded freshly per run; the seed is printed once and
 * TSNAP_TEST_SEED=<seed> (decimal or 0x hex) reproduces the run.
 *
 *   tsnap_c_tests                  every suite
 *   tsnap_c_tests SUITE...         those suites
 *   tsnap_c_tests SUITE/TEST...    single tests (e.g. to reproduce a failure)
 *   tsnap_c_tests --list           suite names; --list-tests: SUITE/TEST names
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <CUnit/Basic.h>
#include <hdf5.h>

#include "testutil.h"

extern const test_entry dtype_tests[], roundtrip_tests[], describe_tests[], hyperslab_tests[],
    checksum_tests[], damaged_tests[], commit_tests[], attrs_tests[], args_tests[],
    names_tests[], hdf5_tests[], threads_tests[], lzf_tests[], lzf_host_tests[],
    codecs_tests[], device_tests[], store_tests[], virtual_tests[], table_tests[],
    strings_tests[], foreign_tests[], vlen_fill_tests[];
#ifdef TSNAP_TEST_GPU
extern const test_entry gpu_tests[];
#endif

static const struct {
    const char *name;
    const test_entry *tests;
} SUITES[] = {
    {"dtype", dtype_tests},         {"roundtrip", roundtrip_tests},
    {"describe", describe_tests},   {"hyperslab", hyperslab_tests},
    {"checksum", checksum_tests},   {"damaged", damaged_tests},
    {"commit", commit_tests},       {"attrs", attrs_tests},
    {"args", args_tests},           {"names", names_tests},
    {"hdf5", hdf5_tests},           {"threads", threads_tests},
    {"lzf", lzf_tests},             {"lzf_host", lzf_host_tests},
    {"codecs", codecs_tests},       {"device", device_tests},
    {"store", store_tests},
    {"virtual", virtual_tests},
    {"table", table_tests},
    {"strings", strings_tests},
    {"foreign", foreign_tests},
    {"vlen_fill", vlen_fill_tests},
#ifdef TSNAP_TEST_GPU
    {"gpu", gpu_tests},
#endif
};
#define NSUITES (sizeof SUITES / sizeof SUITES[0])

static uint64_t fresh_seed(void)
{
    uint64_t s = 0;
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd >= 0) {
        if (read(fd, &s, sizeof s) != (ssize_t)sizeof s)
            s = 0;
        close(fd);
    }
    if (s == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        s = ((uint64_t)ts.tv_sec * 1000000007ULL) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
    }
    return s;
}

/* Registers suite i (only test `only` when not NULL); 1 if `only` is unknown. */
static int add_suite(size_t i, const char *only)
{
    CU_pSuite s = CU_get_suite(SUITES[i].name);
    if (!s)
        s = CU_add_suite_with_setup_and_teardown(SUITES[i].name, NULL, NULL, test_setup,
                                                 test_teardown);
    if (!s)
        return -1;
    int found = 0;
    for (const test_entry *t = SUITES[i].tests; t->name; t++) {
        if (only && strcmp(only, t->name) != 0)
            continue;
        found = 1;
        if (!CU_add_test(s, t->name, t->fn))
            return -1;
    }
    return found ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < NSUITES; i++)
            printf("%s\n", SUITES[i].name);
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "--list-tests") == 0) {
        for (size_t i = 0; i < NSUITES; i++)
            for (const test_entry *t = SUITES[i].tests; t->name; t++)
                printf("%s/%s\n", SUITES[i].name, t->name);
        return 0;
    }

    const char *env = getenv("TSNAP_TEST_SEED");
    g_seed = (env && *env) ? strtoull(env, NULL, 0) : fresh_seed();
    printf("tsnap C tests: seed %llu (TSNAP_TEST_SEED=%llu reproduces this run)\n",
           (unsigned long long)g_seed, (unsigned long long)g_seed);
    fflush(stdout);

    /* The tests provoke HDF5 errors on purpose; keep its stack quiet. */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);

    if (CU_initialize_registry() != CUE_SUCCESS) {
        fprintf(stderr, "CUnit: %s\n", CU_get_error_msg());
        return 2;
    }
    int status = 0;
    if (argc <= 1) {
        for (size_t i = 0; i < NSUITES; i++)
            status |= add_suite(i, NULL);
    } else {
        for (int a = 1; a < argc; a++) {
            const char *slash = strchr(argv[a], '/');
            size_t len = slash ? (size_t)(slash - argv[a]) : strlen(argv[a]);
            size_t i = 0;
            while (i < NSUITES &&
                   (strlen(SUITES[i].name) != len || strncmp(SUITES[i].name, argv[a], len) != 0))
                i++;
            int rc = i < NSUITES ? add_suite(i, slash ? slash + 1 : NULL) : 1;
            if (rc > 0) {
                fprintf(stderr, "unknown suite or test \"%s\" (--list-tests names them)\n",
                        argv[a]);
                CU_cleanup_registry();
                return 2;
            }
            status |= rc;
        }
    }
    if (status != 0) {
        fprintf(stderr, "CUnit: %s\n", CU_get_error_msg());
        CU_cleanup_registry();
        return 2;
    }

    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_suites_failed();
    unsigned ran = CU_get_number_of_tests_run();
    CU_cleanup_registry();
    if (CU_get_error() != CUE_SUCCESS)
        return 2;
    return (failed != 0 || ran == 0) ? 1 : 0;
}
