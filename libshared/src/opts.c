/*
 * opts.c - flags and CXM_* environment variables (see cxm/opts.h).
 */
#include "cxm/opts.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cxm/err.h"

void cxm_opt_env_name(const char *name, char *buf, size_t len)
{
    if (len == 0)
        return;
    size_t n = (size_t)snprintf(buf, len, "CXM_");
    for (; *name && n + 1 < len; name++, n++)
        buf[n] = *name == '-' ? '_' : (char)toupper((unsigned char)*name);
    buf[n < len ? n : len - 1] = '\0';
}

/* A decimal integer with an optional suffix from units (name, multiplier). */
typedef struct unit {
    const char *suffix;
    int64_t mult;
} unit;

static const unit byte_units[] = {{"", 1},          {"K", 1 << 10},   {"KiB", 1 << 10},
                                  {"M", 1 << 20},   {"MiB", 1 << 20}, {"G", 1 << 30},
                                  {"GiB", 1 << 30}, {NULL, 0}};
static const unit millis_units[] = {{"", 1},      {"ms", 1},      {"s", 1000},
                                    {"m", 60000}, {"h", 3600000}, {NULL, 0}};
static const unit no_units[] = {{"", 1}, {NULL, 0}};

static bool parse_scaled(const char *s, const unit *units, int64_t *out)
{
    errno = 0;
    char *end;
    if (!*s || isspace((unsigned char)*s))
        return false;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s)
        return false;
    for (const unit *u = units; u->suffix; u++) {
        if (strcasecmp(end, u->suffix) != 0)
            continue;
        if (v > INT64_MAX / u->mult || v < INT64_MIN / u->mult)
            return false;
        *out = (int64_t)v * u->mult;
        return true;
    }
    return false;
}

static bool parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return *out = true, true;
        if (strcasecmp(s, no[i]) == 0)
            return *out = false, true;
    }
    return false;
}

static const char *expected_form(cxm_opt_type t)
{
    switch (t) {
    case CXM_OPT_INT:
        return "an integer";
    case CXM_OPT_BYTES:
        return "a size such as 4096, 64K or 4M";
    case CXM_OPT_MILLIS:
        return "a duration such as 250ms, 5s or 2m";
    case CXM_OPT_BOOL:
        return "true or false";
    default:
        return "a string";
    }
}

/* Store value into o; where names the flag or variable for the message. */
static int apply(const cxm_opt *o, const char *value, const char *where, char *err, size_t errlen)
{
    int64_t v = 0;
    bool ok = true;
    switch (o->type) {
    case CXM_OPT_STR:
        *(const char **)o->target = value;
        return 0;
    case CXM_OPT_BOOL:
        ok = parse_bool(value, (bool *)o->target);
        break;
    case CXM_OPT_INT:
        ok = parse_scaled(value, no_units, &v);
        break;
    case CXM_OPT_BYTES:
        ok = parse_scaled(value, byte_units, &v) && v >= 0;
        break;
    case CXM_OPT_MILLIS:
        ok = parse_scaled(value, millis_units, &v);
        break;
    }
    if (!ok) {
        snprintf(err, errlen, "%s: \"%s\" is not %s", where, value, expected_form(o->type));
        return CXM_EINVAL;
    }
    if (o->type == CXM_OPT_BOOL)
        return 0;
    if ((o->min || o->max) && (v < o->min || v > o->max)) {
        snprintf(err, errlen, "%s: %s is out of range; use %" PRId64 "..%" PRId64, where, value,
                 o->min, o->max);
        return CXM_EINVAL;
    }
    if (o->type == CXM_OPT_BYTES)
        *(uint64_t *)o->target = (uint64_t)v;
    else
        *(int64_t *)o->target = v;
    return 0;
}

static int apply_env(const cxm_opt *opts, size_t nopts, char *err, size_t errlen)
{
    for (size_t i = 0; i < nopts; i++) {
        char name[128];
        cxm_opt_env_name(opts[i].name, name, sizeof name);
        const char *v = getenv(name);
        if (!v)
            continue;
        int rc = apply(&opts[i], v, name, err, errlen);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static const cxm_opt *find(const cxm_opt *opts, size_t nopts, const char *name, size_t len)
{
    for (size_t i = 0; i < nopts; i++)
        if (strlen(opts[i].name) == len && memcmp(opts[i].name, name, len) == 0)
            return &opts[i];
    return NULL;
}

/* One "--name[=value]" at argv[*i]; may consume the next argument. */
static int parse_flag(const cxm_opt *opts, size_t nopts, int argc, char **argv, int *i, char *err,
                      size_t errlen)
{
    const char *arg = argv[*i] + 2;
    const char *eq = strchr(arg, '=');
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    const cxm_opt *o = find(opts, nopts, arg, len);
    char where[140];
    snprintf(where, sizeof where, "--%.*s", (int)len, arg);
    if (!o) {
        snprintf(err, errlen, "unknown flag %s", where);
        return CXM_EINVAL;
    }
    const char *value = eq ? eq + 1 : NULL;
    if (!value && o->type == CXM_OPT_BOOL)
        value = "true";
    if (!value) {
        if (*i + 1 >= argc) {
            snprintf(err, errlen, "%s needs a value (%s)", where, expected_form(o->type));
            return CXM_EINVAL;
        }
        value = argv[++*i];
    }
    return apply(o, value, where, err, errlen);
}

int cxm_opts_parse(const cxm_opt *opts, size_t nopts, int argc, char **argv,
                   const char **positional, size_t *npositional, char *err, size_t errlen)
{
    char scratch[8];
    if (!err)
        err = scratch, errlen = sizeof scratch;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return 1;
    int rc = apply_env(opts, nopts, err, errlen);
    if (rc != 0)
        return rc;
    size_t cap = positional && npositional ? *npositional : 0, npos = 0;
    bool only_positional = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!only_positional && strcmp(a, "--") == 0) {
            only_positional = true;
        } else if (!only_positional && a[0] == '-' && a[1] == '-') {
            rc = parse_flag(opts, nopts, argc, argv, &i, err, errlen);
            if (rc != 0)
                return rc;
        } else if (!only_positional && a[0] == '-' && a[1] != '\0') {
            snprintf(err, errlen, "unknown flag %s (flags are spelled --name)", a);
            return CXM_EINVAL;
        } else if (npos < cap) {
            positional[npos++] = a;
        } else {
            snprintf(err, errlen, "unexpected argument \"%s\"", a);
            return CXM_EINVAL;
        }
    }
    if (npositional)
        *npositional = npos;
    return 0;
}

static void format_value(const cxm_opt *o, char *buf, size_t len)
{
    switch (o->type) {
    case CXM_OPT_STR: {
        const char *s = *(const char **)o->target;
        snprintf(buf, len, "%s", s ? s : "(none)");
        break;
    }
    case CXM_OPT_BOOL:
        snprintf(buf, len, "%s", *(bool *)o->target ? "true" : "false");
        break;
    case CXM_OPT_BYTES:
        snprintf(buf, len, "%" PRIu64, *(uint64_t *)o->target);
        break;
    case CXM_OPT_MILLIS:
        snprintf(buf, len, "%" PRId64 "ms", *(int64_t *)o->target);
        break;
    case CXM_OPT_INT:
        snprintf(buf, len, "%" PRId64, *(int64_t *)o->target);
        break;
    }
}

void cxm_opts_usage(FILE *out, const char *prog, const char *summary, const cxm_opt *opts,
                    size_t nopts)
{
    fprintf(out, "usage: %s [options]\n", prog);
    if (summary)
        fprintf(out, "%s\n", summary);
    fprintf(out, "\noptions (each also an environment variable; flags win):\n");
    for (size_t i = 0; i < nopts; i++) {
        char env[128], def[128], flag[160];
        cxm_opt_env_name(opts[i].name, env, sizeof env);
        format_value(&opts[i], def, sizeof def);
        snprintf(flag, sizeof flag, "--%s%s", opts[i].name,
                 opts[i].type == CXM_OPT_BOOL ? "" : " VALUE");
        fprintf(out, "  %-28s %s\n  %-28s [%s, default %s]\n", flag, opts[i].help, "", env, def);
    }
}
