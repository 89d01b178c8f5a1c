/*
 * opts.h - configuration from command-line flags and CXM_* environment
 * variables, described once in a table.
 *
 * Precedence: the value already in the target (the default) < the
 * environment variable < the flag. Flags are "--name value" or "--name=value";
 * boolean flags take no value ("--json") but accept "--json=false". "--help"
 * is not handled here: cxm_opts_parse() reports it so the caller can print
 * cxm_opts_usage() and exit 0.
 *
 * Not thread-safe; call during start-up.
 */
#ifndef CXM_OPTS_H
#define CXM_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum cxm_opt_type {
    CXM_OPT_STR,    /* const char **: points into argv or environ, not copied */
    CXM_OPT_INT,    /* int64_t *, decimal, range-checked against min/max */
    CXM_OPT_BYTES,  /* uint64_t *, with optional K/M/G suffix (KiB/MiB/GiB) */
    CXM_OPT_MILLIS, /* int64_t * milliseconds, with optional ms/s/m suffix */
    CXM_OPT_BOOL,   /* bool *: true/false/1/0/yes/no, or bare flag = true */
} cxm_opt_type;

typedef struct cxm_opt {
    const char *name; /* flag without dashes: "listen" -> --listen; env CXM_LISTEN */
    cxm_opt_type type;
    void *target;
    int64_t min, max; /* inclusive bounds for INT/BYTES/MILLIS; both 0 = unchecked */
    const char *help; /* one line, shown by cxm_opts_usage() */
} cxm_opt;

/* The environment variable of an option: "CXM_" + upper-cased name with '-'
 * replaced by '_' ("max-message-bytes" -> CXM_MAX_MESSAGE_BYTES). Writes into
 * buf (NUL-terminated, truncated to len). */
void cxm_opt_env_name(const char *name, char *buf, size_t len);

/* Apply environment variables, then argv[1..argc-1], to the options.
 * Returns:
 *   0             every argument was consumed;
 *   1             --help or -h was given (nothing else is reported);
 *   CXM_EINVAL    an unknown flag, a missing or malformed value, or a value
 *                 out of range; err (if not NULL) receives a message naming
 *                 the flag or variable and what is wrong with it.
 * Positional arguments are refused unless positional is not NULL, in which
 * case they are stored there in order (up to *npositional on entry, the count
 * on return). Options may share a name (modules of one host taking the same
 * flag): the flag and its variable set each of them. */
int cxm_opts_parse(const cxm_opt *opts, size_t nopts, int argc, char **argv,
                   const char **positional, size_t *npositional, char *err, size_t errlen);

/* Print "usage: prog [options]" and one line per option with its flag,
 * environment variable, current (default) value and help; an option sharing
 * the name of an earlier one is not printed again. */
void cxm_opts_usage(FILE *out, const char *prog, const char *summary, const cxm_opt *opts,
                    size_t nopts);

#endif
