/*
 * fuzz_replay.c - the main of the fuzz targets in builds without libFuzzer:
 * runs every file named on the command line (a directory: every file in
 * it) through LLVMFuzzerTestOneInput once, so the committed corpora are a
 * regression test under ctest (and ASan, in the sanitizer build).
 *
 *   fuzz_<name> DIR|FILE...
 *
 * Exits 0 when every input ran, 1 when one could not be read (a crash is
 * the sanitizer's or the signal's to report).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

/* Run one file; 0, or -1 when it cannot be read. */
static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "fuzz replay: cannot open %s\n", path);
        return -1;
    }
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) {
            uint8_t *bigger = realloc(buf, cap *= 2);
            if (!bigger)
                free(buf);
            buf = bigger;
        }
    }
    int bad = ferror(f) || !buf;
    fclose(f);
    if (bad) {
        free(buf);
        fprintf(stderr, "fuzz replay: cannot read %s\n", path);
        return -1;
    }
    /* An exact-size copy, so that ASan catches a read one past the input. */
    uint8_t *in = malloc(n ? n : 1);
    if (in)
        memcpy(in, buf, n);
    free(buf);
    if (!in)
        return -1;
    LLVMFuzzerTestOneInput(in, n);
    free(in);
    return 0;
}

/* Every regular file directly in dir, in name order (stable logs). */
static int run_dir(const char *dir, size_t *count)
{
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort);
    if (n < 0) {
        fprintf(stderr, "fuzz replay: cannot read directory %s\n", dir);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            rc |= run_file(path);
            (*count)++;
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR|FILE...\n", argv[0]);
        return 2;
    }
    size_t count = 0;
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            rc |= run_dir(argv[i], &count);
        } else {
            rc |= run_file(argv[i]);
            count++;
        }
    }
    printf("%s: %zu inputs replayed%s\n", argv[0], count, rc ? ", some unreadable" : "");
    return rc ? 1 : 0;
}
