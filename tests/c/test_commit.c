/*
 * test_commit.c - atomic commit: nothing under the final name before
 * commit, a hidden ".<name>.<random>.tsnap-tmp" beside it; after commit the
 * final file and no temporary; abort, free and failed writes leave no file
 * and leave a pre-existing file byte-identical; overwrite=0 gives EEXISTS.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static const char OLD_BYTES[] = "an older snapshot, not to be touched\n";

static void put_small(tsnap_writer *w, const char *name)
{
    static int32_t v[6] = {1, -2, 3, -4, 5, -6};
    int64_t shape[2] = {2, 3};
    DLTensor t = cpu_tensor(v, TSNAP_INT32, 2, shape, NULL, 0);
    CHECK_OK(tsnap_writer_put(w, name, &t));
}

static void check_no_temp(const char *base)
{
    CHECK_MSG(count_temp_files(tdir(), base) == 0, "%d temporary file(s) left for %s",
              count_temp_files(tdir(), base), base);
}

static void check_old_file_intact(const char *path)
{
    size_t n = 0;
    unsigned char *b = slurp(path, &n);
    CHECK_FATAL(b != NULL);
    CHECK_I64(n, sizeof OLD_BYTES - 1);
    if (n == sizeof OLD_BYTES - 1)
        CHECK_MEM(b, OLD_BYTES, n, "pre-existing file");
    free(b);
}

static void test_before_commit_only_a_hidden_temporary_file_exists(void)
{
    const char *path = tpath("snap.h5");
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
    CHECK(!path_exists(path));
    CHECK_I64(count_temp_files(tdir(), "snap.h5"), 1);
    CHECK_I64(count_entries(tdir()), 1);
    put_small(w, "a");
    put_small(w, "b/c");
    CHECK(!path_exists(path));
    CHECK_I64(count_temp_files(tdir(), "snap.h5"), 1);
    CHECK_I64(count_entries(tdir()), 1);
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
}

static void test_after_commit_the_final_file_exists_and_no_temporary_remains(void)
{
    const char *path = tpath("snap.h5");
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
    put_small(w, "a");
    CHECK_OK(tsnap_writer_commit(w));
    CHECK(path_exists(path));
    check_no_temp("snap.h5");
    CHECK_I64(count_entries(tdir()), 1);
    tsnap_writer_free(w);
    CHECK(path_exists(path));
    tsnap_reader *r = open_reader(path);
    CHECK_I64(tsnap_reader_count(r), 1);
    tsnap_reader_free(r);
}

static void test_commit_without_fsync_still_renames_atomically(void)
{
    const char *path = tpath("fast.h5");
    tsnap_write_options o = TSNAP_WRITE_OPTIONS_INIT;
    o.durable = 0;
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, &o));
    put_small(w, "a");
    CHECK(!path_exists(path));
    CHECK_I64(count_temp_files(tdir(), "fast.h5"), 1);
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    CHECK(path_exists(path));
    check_no_temp("fast.h5");
    tsnap_reader *r = open_reader(path);
    CHECK_I64(tsnap_reader_count(r), 1);
    tsnap_reader_free(r);
}

static void test_abort_leaves_no_file_and_no_temporary(void)
{
    const char *path = tpath("snap.h5");
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
    put_small(w, "a");
    CHECK_OK(tsnap_writer_abort(w));
    CHECK(!path_exists(path));
    CHECK_I64(count_entries(tdir()), 0);
    tsnap_writer_free(w);
    CHECK_I64(count_entries(tdir()), 0);
}

static void test_free_without_commit_leaves_no_file_and_no_temporary(void)
{
    const char *path = tpath("snap.h5");
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
    put_small(w, "a");
    tsnap_writer_free(w);
    CHECK(!path_exists(path));
    CHECK_I64(count_entries(tdir()), 0);
    tsnap_writer_free(NULL);
}

static void test_abort_leaves_a_preexisting_file_byte_identical(void)
{
    const char *path = tpath("snap.h5");
    CHECK_FATAL(spit(path, OLD_BYTES, sizeof OLD_BYTES - 1) == 0);
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
    put_small(w, "a");
    check_old_file_intact(path);
    CHECK_OK(tsnap_writer_abort(w));
    tsnap_writer_free(w);
    check_old_file_intact(path);
    CHECK_I64(count_entries(tdir()), 1);
}

static void test_free_without_commit_leaves_a_preexisting_file_byte_identical(void)
{
    const char *path = tpath("snap.h5");
    CHECK_FATAL(spit(path, OLD_BYTES, sizeof OLD_BYTES - 1) == 0);
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
    put_small(w, "a");
    tsnap_writer_free(w);
    check_old_file_intact(path);
    CHECK_I64(count_entries(tdir()), 1);
}

static void test_commit_replaces_a_preexisting_file_by_default(void)
{
    const char *path = tpath("snap.h5");
    CHECK_FATAL(spit(path, OLD_BYTES, sizeof OLD_BYTES - 1) == 0);
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
    put_small(w, "fresh");
    CHECK_OK(tsnap_writer_commit(w));
    tsnap_writer_free(w);
    check_no_temp("snap.h5");
    tsnap_reader *r = open_reader(path);
    CHECK_STR(tsnap_reader_name(r, 0), "fresh");
    tsnap_reader_free(r);
}

static void test_create_with_overwrite_off_refuses_an_existing_file_with_eexists(void)
{
    const char *path = tpath("snap.h5");
    CHECK_FATAL(spit(path, OLD_BYTES, sizeof OLD_BYTES - 1) == 0);
    tsnap_write_options o = TSNAP_WRITE_OPTIONS_INIT;
    o.overwrite = 0;
    tsnap_writer *w = (tsnap_writer *)&o;
    CHECK_ERR(tsnap_writer_create(&w, path, &o), TSNAP_EEXISTS);
    CHECK(w == NULL);
    CHECK_ERRMSG_HAS("snap.h5");
    check_old_file_intact(path);
    CHECK_I64(count_entries(tdir()), 1);
}

static void test_commit_with_overwrite_off_refuses_a_file_that_appeared_meanwhile(void)
{
    const char *path = tpath("snap.h5");
    tsnap_write_options o = TSNAP_WRITE_OPTIONS_INIT;
    o.overwrite = 0;
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, &o));
    put_small(w, "a");
    CHECK_FATAL(spit(path, OLD_BYTES, sizeof OLD_BYTES - 1) == 0);
    CHECK_ERR(tsnap_writer_commit(w), TSNAP_EEXISTS);
    tsnap_writer_free(w);
    check_old_file_intact(path);
    check_no_temp("snap.h5");
    CHECK_I64(count_entries(tdir()), 1);
}

static void test_create_in_a_missing_directory_gives_enotfound(void)
{
    tsnap_writer *w = (tsnap_writer *)&w;
    CHECK_ERR(tsnap_writer_create(&w, tpath("missing/snap.h5"), NULL), TSNAP_ENOTFOUND);
    CHECK(w == NULL);
    CHECK_ERRMSG_HAS("missing");
}

static void test_two_writers_for_one_path_use_distinct_temporary_files(void)
{
    const char *p = tpath("snap.h5");
    char path[4096];
    snprintf(path, sizeof path, "%s", p);
    tsnap_writer *w1 = NULL, *w2 = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w1, path, NULL));
    CHECK_OK_FATAL(tsnap_writer_create(&w2, path, NULL));
    CHECK_I64(count_temp_files(tdir(), "snap.h5"), 2);
    put_small(w1, "one");
    put_small(w2, "two");
    CHECK_OK(tsnap_writer_commit(w1));
    CHECK_OK(tsnap_writer_commit(w2));
    tsnap_writer_free(w1);
    tsnap_writer_free(w2);
    check_no_temp("snap.h5");
    tsnap_reader *r = open_reader(path);
    CHECK_STR(tsnap_reader_name(r, 0), "two");
    tsnap_reader_free(r);
}

static void test_a_finished_writer_refuses_everything_with_estate(void)
{
    const char *path = tpath("snap.h5");
    int32_t v = 7;
    DLTensor s = cpu_tensor(&v, TSNAP_INT32, 0, NULL, NULL, 0);
    tsnap_writer *w = NULL;
    CHECK_OK_FATAL(tsnap_writer_create(&w, path, NULL));
    put_small(w, "a");
    CHECK_OK(tsnap_writer_commit(w));
    CHECK_ERR(tsnap_writer_put(w, "b", &s), TSNAP_ESTATE);
    CHECK_ERR(tsnap_writer_set_attr(w, NULL, "k", &s), TSNAP_ESTATE);
    CHECK_ERR(tsnap_writer_set_attr_string(w, NULL, "k", "v"), TSNAP_ESTATE);
    CHECK_ERR(tsnap_writer_commit(w), TSNAP_ESTATE);
    (void)tsnap_writer_abort(w); /* too late: must not touch the committed file */
    CHECK(path_exists(path));
    tsnap_writer_free(w);
    tsnap_reader *r = open_reader(path);
    CHECK_I64(tsnap_reader_count(r), 1);
    tsnap_reader_free(r);

    const char *path2 = tpath("aborted.h5");
    CHECK_OK_FATAL(tsnap_writer_create(&w, path2, NULL));
    CHECK_OK(tsnap_writer_abort(w));
    CHECK_ERR(tsnap_writer_put(w, "b", &s), TSNAP_ESTATE);
    CHECK_ERR(tsnap_writer_commit(w), TSNAP_ESTATE);
    tsnap_writer_free(w);
    CHECK(!path_exists(path2));
    check_no_temp("aborted.h5");
}

/*
 * In a child limited to 64 KiB of file size (SIGXFSZ ignored, so write()
 * fails with EFBIG), writing 4 MiB must fail at put or commit with a
 * negative code and a message, and leave no temporary and either no final
 * file or the old one intact.  The child's exit status says what went wrong.
 */
enum {
    CHILD_OK = 0,
    CHILD_CREATE_FAILED = 10,
    CHILD_NOTHING_FAILED = 11,
    CHILD_NO_MESSAGE = 12,
    CHILD_FINAL_FILE_LEFT = 13,
    CHILD_TEMP_LEFT = 14,
    CHILD_COMMITTED_AFTER_FAILED_PUT = 15,
    CHILD_OLD_FILE_CHANGED = 16,
};

static int child_write_past_the_limit(const char *path, int old_exists)
{
    struct rlimit rl = {64 << 10, 64 << 10};
    signal(SIGXFSZ, SIG_IGN);
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
        return 90;
    tsnap_writer *w = NULL;
    if (tsnap_writer_create(&w, path, NULL) != 0)
        return CHILD_CREATE_FAILED;
    size_t n = (size_t)4 << 20;
    unsigned char *buf = malloc(n);
    if (!buf)
        return 91;
    for (size_t i = 0; i < n; i++)
        buf[i] = (unsigned char)(i * 2654435761u >> 13);
    int64_t shape[2] = {1024, 1024};
    DLTensor t = cpu_tensor(buf, TSNAP_FLOAT32, 2, shape, NULL, 0);
    int rc_put = tsnap_writer_put(w, "big", &t);
    int msg_put = tsnap_errmsg()[0] != '\0';
    int rc_commit = tsnap_writer_commit(w);
    int msg_commit = tsnap_errmsg()[0] != '\0';
    tsnap_writer_free(w);
    free(buf);
    fprintf(stderr, "  (child: put %d, commit %d: %s)\n", rc_put, rc_commit, tsnap_errmsg());
    if (rc_put >= 0 && rc_commit >= 0)
        return CHILD_NOTHING_FAILED;
    if (rc_put < 0 && rc_commit >= 0)
        return CHILD_COMMITTED_AFTER_FAILED_PUT;
    if ((rc_put < 0 && !msg_put) || (rc_commit < 0 && !msg_commit))
        return CHILD_NO_MESSAGE;
    if (count_temp_files(tdir(), base_name(path)) != 0)
        return CHILD_TEMP_LEFT;
    if (old_exists) {
        size_t sz = 0;
        unsigned char *b = slurp(path, &sz);
        int same = b && sz == sizeof OLD_BYTES - 1 && memcmp(b, OLD_BYTES, sz) == 0;
        free(b);
        if (!same)
            return CHILD_OLD_FILE_CHANGED;
    } else if (path_exists(path)) {
        return CHILD_FINAL_FILE_LEFT;
    }
    return CHILD_OK;
}

static void run_write_past_the_limit(int old_exists)
{
    const char *p = tpath("snap.h5");
    char path[4096];
    snprintf(path, sizeof path, "%s", p);
    if (old_exists)
        CHECK_FATAL(spit(path, OLD_BYTES, sizeof OLD_BYTES - 1) == 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK_FATAL(pid >= 0);
    if (pid == 0)
        _exit(child_write_past_the_limit(path, old_exists));
    int status = 0;
    CHECK_FATAL(waitpid(pid, &status, 0) == pid);
    CHECK_MSG(WIFEXITED(status), "child died of signal %d", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    if (WIFEXITED(status)) {
        static const char *why[] = {
            [CHILD_CREATE_FAILED] = "create failed before anything was written",
            [CHILD_NOTHING_FAILED] = "put and commit both succeeded past the file size limit",
            [CHILD_NO_MESSAGE] = "a failing call left tsnap_errmsg() empty",
            [CHILD_FINAL_FILE_LEFT] = "a file was left under the final name",
            [CHILD_TEMP_LEFT] = "the temporary file was left behind",
            [CHILD_COMMITTED_AFTER_FAILED_PUT] = "commit succeeded after a failed put",
            [CHILD_OLD_FILE_CHANGED] = "the pre-existing file changed",
        };
        int code = WEXITSTATUS(status);
        CHECK_MSG(code == CHILD_OK, "child exit status %d: %s", code,
                  code < (int)(sizeof why / sizeof why[0]) && why[code] ? why[code] : "?");
    }
    /* and, seen from here, the same */
    check_no_temp("snap.h5");
    if (old_exists)
        check_old_file_intact(path);
    else
        CHECK(!path_exists(path));
}

static void test_failed_write_past_the_file_size_limit_leaves_no_file(void)
{
    run_write_past_the_limit(0);
}

static void test_failed_write_past_the_file_size_limit_leaves_a_preexisting_file_intact(void)
{
    run_write_past_the_limit(1);
}

const test_entry commit_tests[] = {
    TEST(test_before_commit_only_a_hidden_temporary_file_exists),
    TEST(test_after_commit_the_final_file_exists_and_no_temporary_remains),
    TEST(test_commit_without_fsync_still_renames_atomically),
    TEST(test_abort_leaves_no_file_and_no_temporary),
    TEST(test_free_without_commit_leaves_no_file_and_no_temporary),
    TEST(test_abort_leaves_a_preexisting_file_byte_identical),
    TEST(test_free_without_commit_leaves_a_preexisting_file_byte_identical),
    TEST(test_commit_replaces_a_preexisting_file_by_default),
    TEST(test_create_with_overwrite_off_refuses_an_existing_file_with_eexists),
    TEST(test_commit_with_overwrite_off_refuses_a_file_that_appeared_meanwhile),
    TEST(test_create_in_a_missing_directory_gives_enotfound),
    TEST(test_two_writers_for_one_path_use_distinct_temporary_files),
    TEST(test_a_finished_writer_refuses_everything_with_estate),
    TEST(test_failed_write_past_the_file_size_limit_leaves_no_file),
    TEST(test_failed_write_past_the_file_size_limit_leaves_a_preexisting_file_intact),
    TEST_END,
};
