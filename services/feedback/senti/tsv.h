/*
 * tsv.h - the labelled sentiment files the trainer and the evaluator read:
 * gzip (or plain) TSV, one `LABEL<TAB>TEXT` a line, LABEL 1 (positive) or 0;
 * the lexicons (lexicon/) also use 2, neutral. Tools only; the library
 * never reads a file but its model.
 */
#ifndef CXM_SENTI_TSV_H
#define CXM_SENTI_TSV_H

#include <stddef.h>
#include <stdint.h>

typedef struct tsv_corpus {
    size_t n;
    uint8_t *y;    /* n labels: 0, 1, or 2 (neutral) */
    uint64_t *off; /* n + 1 offsets into text */
    char *text;    /* all texts back to back, not terminated */
} tsv_corpus;

/* Read at most limit rows (0: all) of path; lines that are not
 * `0|1|2<TAB>text` are skipped and counted in *skipped. CXM_EIO or CXM_ENOMEM
 * with a reason in err (256 bytes). */
int tsv_read(const char *path, size_t limit, tsv_corpus *c, size_t *skipped, char *err);
void tsv_free(tsv_corpus *c);

#endif
