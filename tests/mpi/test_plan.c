/*
 * test_plan.c - rank 0's check of the blocks, against a brute-force oracle.
 *
 * Random decompositions of random tensors (1 to 3 dimensions, random cuts
 * per axis, ranks holding no block), each then left whole or spoiled: a
 * block dropped (a gap), grown (an overlap or a block outside), moved.
 * The oracle paints every element with the ranks that hold it; the check
 * (tm_plan, no MPI launch needed) must accept exactly the decompositions
 * where every element is held once, and name the fault it finds.  Then
 * the disagreements between ranks: a missing name, another dtype,
 * another global shape, sharded on some ranks and replicated on others.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../src/mpi/mpi_internal.h"

static uint64_t g_state;
static int g_failed;

static uint64_t next(void)
{
    uint64_t z = (g_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int64_t below(int64_t n) { return n > 0 ? (int64_t)(next() % (uint64_t)n) : 0; }

#define EXPECT(cond, ...)                                                                 \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "FAIL line %d: %s: ", __LINE__, #cond);                       \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fprintf(stderr, "\n");                                                        \
            g_failed++;                                                                   \
        }                                                                                 \
    } while (0)

/* One tensor "u" per rank. */
static tm_record *records(int nranks)
{
    tm_record *r = calloc((size_t)nranks, sizeof *r);
    for (int i = 0; i < nranks; i++) {
        r[i].n = 1;
        r[i].e = calloc(1, sizeof *r[i].e);
        r[i].e[0].name = strdup("u");
        r[i].e[0].dtype = TSNAP_FLOAT32;
    }
    return r;
}

/* The oracle: 0 if every element is held exactly once (and every block
 * lies inside), 1 for an overlap, 2 for a gap, 3 for a block outside. */
static int oracle(const tm_record *r, int nranks, int ndim, const int64_t *shape)
{
    int64_t total = 1;
    for (int d = 0; d < ndim; d++)
        total *= shape[d];
    for (int i = 0; i < nranks; i++) {
        const tm_entry *e = &r[i].e[0];
        if (tm_block_empty(e))
            continue;
        for (int d = 0; d < ndim; d++)
            if (e->offset[d] < 0 || e->offset[d] + e->block[d] > shape[d])
                return 3;
    }
    unsigned char *held = calloc((size_t)total + 1, 1);
    int verdict = 0;
    for (int i = 0; i < nranks && !verdict; i++) {
        const tm_entry *e = &r[i].e[0];
        if (tm_block_empty(e))
            continue;
        int64_t idx[3] = {0, 0, 0};
        for (;;) {
            int64_t flat = 0;
            for (int d = 0; d < ndim; d++)
                flat = flat * shape[d] + e->offset[d] + idx[d];
            if (held[flat]++) {
                verdict = 1;
                break;
            }
            int d = ndim - 1;
            while (d >= 0 && ++idx[d] == e->block[d])
                idx[d--] = 0;
            if (d < 0)
                break;
        }
    }
    for (int64_t k = 0; k < total && !verdict; k++)
        if (!held[k])
            verdict = 2;
    free(held);
    return verdict;
}

static void random_tiling(void)
{
    for (int round = 0; round < 3000; round++) {
        int ndim = 1 + (int)below(3);
        int64_t shape[3], cuts[3][6];
        int ncuts[3], nblocks = 1;
        for (int d = 0; d < ndim; d++) {
            shape[d] = 1 + below(9);
            ncuts[d] = 1 + (int)below(shape[d] < 4 ? shape[d] : 4);
            /* sorted distinct starts, the first 0 */
            cuts[d][0] = 0;
            for (int k = 1; k < ncuts[d]; k++)
                cuts[d][k] = cuts[d][k - 1] + 1 + below(shape[d] - cuts[d][k - 1] - (ncuts[d] - k));
            cuts[d][ncuts[d]] = shape[d];
            nblocks *= ncuts[d];
        }
        int idle = (int)below(3); /* ranks with no block */
        int nranks = nblocks + idle;
        tm_record *r = records(nranks);
        /* blocks in a random rank order */
        int *perm = malloc((size_t)nranks * sizeof *perm);
        for (int i = 0; i < nranks; i++)
            perm[i] = i;
        for (int i = nranks - 1; i > 0; i--) {
            int j = (int)below(i + 1), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        for (int b = 0; b < nranks; b++) {
            tm_entry *e = &r[perm[b]].e[0];
            tm_entry_dims(e, ndim);
            memcpy(e->shape, shape, (size_t)ndim * sizeof *shape);
            int rest = b;
            for (int d = ndim - 1; d >= 0; d--) {
                if (b >= nblocks) {
                    e->offset[d] = below(shape[d] + 1);
                    e->block[d] = d == 0 ? 0 : below(3);
                    continue;
                }
                int k = rest % ncuts[d];
                rest /= ncuts[d];
                e->offset[d] = cuts[d][k];
                e->block[d] = cuts[d][k + 1] - cuts[d][k];
            }
        }
        /* spoil some */
        int how = (int)below(4);
        tm_entry *victim = &r[perm[below(nblocks)]].e[0];
        int axis = (int)below(ndim);
        if (how == 1)
            victim->block[axis] = 0;                  /* a gap */
        else if (how == 2)
            victim->block[axis] += 1 + below(2);      /* an overlap or outside */
        else if (how == 3)
            victim->offset[axis] += below(3) - 1;     /* moved */
        int want = oracle(r, nranks, ndim, shape);
        tm_tensor *plan = NULL;
        size_t count = 0;
        int err = tm_plan("t.h5", r, nranks, &plan, &count);
        const char *msg = tsnap_errmsg();
        EXPECT((err == 0) == (want == 0), "round %d: check says %d (%s), oracle %d", round, err,
               err ? msg : "tiled", want);
        if (err < 0 && want != 0) {
            const char *needle = want == 1 ? "overlap" : want == 2 ? "gap" : "outside";
            /* a grown block may both overlap and stick out: either is right */
            bool either = strstr(msg, "overlap") || strstr(msg, "outside") || strstr(msg, "gap");
            EXPECT(strstr(msg, needle) || (how >= 2 && either), "round %d: '%s' for %s", round,
                   msg, needle);
            EXPECT(strstr(msg, "tensor 'u'") != NULL, "'%s' names no tensor", msg);
        }
        if (err == 0) {
            EXPECT(count == 1 && plan[0].nblocks <= (size_t)nblocks, "round %d: %zu blocks",
                   round, count ? plan[0].nblocks : 0);
            for (size_t k = 1; count && k < plan[0].nblocks; k++)
                EXPECT(plan[0].ranks[k - 1] < plan[0].ranks[k], "blocks not by rank");
        }
        tm_plan_free(plan, count);
        tm_records_free(r, nranks);
        free(perm);
    }
}

/* Rows of 4 ranks, then one thing changed on some of them. */
static void disagreement(const char *what, const char *needle)
{
    int nranks = 4;
    tm_record *r = records(nranks);
    for (int i = 0; i < nranks; i++) {
        tm_entry *e = &r[i].e[0];
        tm_entry_dims(e, 2);
        e->shape[0] = 8, e->shape[1] = 3;
        e->offset[0] = 2 * i, e->block[0] = 2, e->block[1] = 3;
    }
    if (strcmp(what, "missing") == 0) {
        r[2].n = r[3].n = 0;
    } else if (strcmp(what, "dtype") == 0) {
        r[3].e[0].dtype = TSNAP_FLOAT64;
    } else if (strcmp(what, "shape") == 0) {
        r[1].e[0].shape[1] = 4;
    } else if (strcmp(what, "kind") == 0) {
        r[0].e[0].replicated = 1;
    }
    tm_tensor *plan = NULL;
    size_t count = 0;
    int err = tm_plan("t.h5", r, nranks, &plan, &count);
    EXPECT(err == TSNAP_EINVAL, "%s: %d", what, err);
    EXPECT(strstr(tsnap_errmsg(), needle) != NULL, "%s: '%s' lacks '%s'", what, tsnap_errmsg(),
           needle);
    printf("  %s: %s\n", what, tsnap_errmsg());
    tm_plan_free(plan, count);
    r[2].n = r[3].n = 1;
    tm_records_free(r, nranks);
}

int main(void)
{
    const char *seed = getenv("TSNAP_TEST_SEED");
    g_state = seed ? strtoull(seed, NULL, 10) : (uint64_t)time(NULL);
    printf("test_plan: seed %" PRIu64 " (TSNAP_TEST_SEED)\n", g_state);
    random_tiling();
    disagreement("missing", "tensor 'u' is missing on ranks 2-3");
    disagreement("dtype", "dtype float32 on ranks 0-2, dtype float64 on rank 3");
    disagreement("shape", "global shape [8, 3] on ranks 0, 2-3, global shape [8, 4] on rank 1");
    disagreement("kind", "replicated on rank 0, sharded on ranks 1-3");
    printf("%s\n", g_failed ? "FAILED" : "ok");
    return g_failed ? 1 : 0;
}
