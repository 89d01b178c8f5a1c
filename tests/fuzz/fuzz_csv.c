/*
 * fuzz_csv.c - cxm-eval's interaction files (evalcsv.c): the bytes as a
 * file read by eval_csv_read, and a file it accepts taken on through the
 * evaluator's next steps (de-duplication, both splits). A bad export must
 * fail with file:line, never crash the evaluator.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "personalisation/eval/evalcsv.h"

static void run(const char *path)
{
    recoids users = {0}, items = {0};
    recolog all = {0}, train = {0}, test = {0};
    char err[512] = "";
    int rc = eval_csv_read(path, &users, &items, &all, err, sizeof err);
    if (rc != 0 && !err[0]) {
        fprintf(stderr, "fuzz_csv: refused (code %d) without a message\n", rc);
        abort();
    }
    if (rc == 0) {
        recolog_dedupe(&all);
        eval_split(&all, EVAL_SPLIT_TEMPORAL, 0.2, 1, &train, &test);
        eval_split(&all, EVAL_SPLIT_RANDOM, 0.5, 7, &train, &test);
    }
    recolog_free(&all);
    recolog_free(&train);
    recolog_free(&test);
    recoids_free(&users);
    recoids_free(&items);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A file in memory: the reader takes a path and its stdio loop is part
     * of what is tested. */
    int fd = memfd_create("fuzz_csv", 0);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size) {
        perror("fuzz_csv: memfd");
        abort();
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    run(path);
    close(fd);
    return 0;
}
