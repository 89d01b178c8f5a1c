/*
 * fsent_builtin.c - the model built into the library: the committed
 * model.bin, embedded by fsent_blob.S and checked once on first use. Apart
 * from the rest of the library so the trainer can link without a model.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "feedback/senti/fsent_impl.h"

#define ERRLEN 256

/* The committed model, embedded by fsent_blob.S. */
extern const uint8_t fsent__blob[], fsent__blob_end[];

static fsent_model builtin;
static pthread_once_t builtin_once = PTHREAD_ONCE_INIT;

static void builtin_init(void)
{
    char err[ERRLEN];
    if (fsent__parse(fsent__blob, (size_t)(fsent__blob_end - fsent__blob), &builtin, err) != 0) {
        /* The blob is the committed model.bin, checked by the tests; a
         * build that embeds a broken one must not serve. */
        fprintf(stderr, "fsent: built-in model: %s\n", err);
        abort();
    }
}

const fsent_model *fsent_builtin(void)
{
    pthread_once(&builtin_once, builtin_init);
    return &builtin;
}
