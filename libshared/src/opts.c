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
static const unit millis_units[] = {{"", 1},        {"ms", 1},       {"s", 1000},      {"m", 60000},
                                    {"h", 3600000}, {"d", 86400000}, {"w", 604800000}, {NULL, 0}};
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
        return "a duration such as 250ms, 5s, 2m or 7d";
    case CXM_OPT_BOOL:
        return "true or false (or 1/0, yes/no, on/off)";
    default:
        return "a string";
    }
}

/* How usage names an option's value. */
static const char *value_name(cxm_opt_type t)
{
    switch (t) {
    case CXM_OPT_INT:
        return "N";
    case CXM_OPT_BYTES:
        return "SIZE";
    case CXM_OPT_MILLIS:
        return "DURATION";
    case CXM_OPT_BOOL:
        return "";
    default:
        return "VALUE";
    }
}

/* A number in the form the option accepts, largest exact unit first, so
 * defaults and bounds read like what a person would type: 64M, 5s. */
static void format_number(cxm_opt_type t, int64_t v, char *buf, size_t len)
{
    static const unit bytes_out[] = {{"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {NULL, 0}};
    static const unit millis_out[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000},
                                      {"s", 1000},     {"ms", 1},      {NULL, 0}};
    const unit *units = t == CXM_OPT_BYTES ? bytes_out : t == CXM_OPT_MILLIS ? millis_out : NULL;
    for (const unit *u = units; v != 0 && u && u->suffix; u++)
        if (v % u->mult == 0) {
            snprintf(buf, len, "%" PRId64 "%s", v / u->mult, u->suffix);
            return;
        }
    snprintf(buf, len, "%" PRId64 "%s", v, t == CXM_OPT_MILLIS ? "ms" : "");
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
        char lo[32], hi[32];
        format_number(o->type, o->min, lo, sizeof lo);
        format_number(o->type, o->max, hi, sizeof hi);
        snprintf(err, errlen, "%s: %s is out of range; use %s to %s", where, value, lo, hi);
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
        /* "--listen --json" almost always means a forgotten value, not an
         * address spelled "--json"; --listen=--json still says the latter. */
        if (*i + 1 >= argc || strncmp(argv[*i + 1], "--", 2) == 0) {
            snprintf(err, errlen, "%s needs a value: %s, as %s VALUE or %s=VALUE", where,
                     expected_form(o->type), where, where);
            return CXM_EINVAL;
        }
        value = argv[++*i];
    }
    /* Modules of one host may share a flag (journey's and feedback's
     * --profile-addr in cxmd): it sets every option of that name, as its
     * environment variable does. */
    int rc = apply(o, value, where, err, errlen);
    for (const cxm_opt *p = o + 1; rc == 0 && p < opts + nopts; p++)
        if (strcmp(p->name, o->name) == 0)
            rc = apply(p, value, where, err, errlen);
    return rc;
}

int cxm_opts_parse(const cxm_opt *opts, size_t nopts, int argc, char **argv,
                   const char **positional, size_t *npositional, char *err, size_t errlen)
{
    char scratch[8];
    if (!err)
        err = scratch, errlen = sizeof scratch;
    /* Help wins over every error, so a broken command line can still ask how
     * to fix itself; after "--" it is an ordinary argument. */
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
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
            snprintf(err, errlen, "unexpected argument \"%s\"%s", a,
                     cap ? " (too many arguments)" : "; options are spelled --name");
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
        const char *v = *(const char **)o->target;
        snprintf(buf, len, "%s", v ? v : "none");
        break;
    }
    case CXM_OPT_BOOL:
        snprintf(buf, len, "%s", *(bool *)o->target ? "true" : "false");
        break;
    case CXM_OPT_BYTES: {
        uint64_t v = *(uint64_t *)o->target;
        if (v > INT64_MAX)
            snprintf(buf, len, "%" PRIu64, v);
        else
            format_number(o->type, (int64_t)v, buf, len);
        break;
    }
    case CXM_OPT_MILLIS:
    case CXM_OPT_INT:
        format_number(o->type, *(int64_t *)o->target, buf, len);
        break;
    }
}

/* One option: flag and value, help, then where else it can be set. */
static void usage_line(FILE *out, const cxm_opt *o)
{
    char env[128], def[128], flag[160], range[80] = "";
    cxm_opt_env_name(o->name, env, sizeof env);
    format_value(o, def, sizeof def);
    const char *vn = value_name(o->type);
    snprintf(flag, sizeof flag, "--%s%s%s", o->name, *vn ? " " : "", vn);
    if (o->type != CXM_OPT_STR && o->type != CXM_OPT_BOOL && (o->min || o->max)) {
        char lo[32], hi[32];
        format_number(o->type, o->min, lo, sizeof lo);
        format_number(o->type, o->max, hi, sizeof hi);
        snprintf(range, sizeof range, ", %s to %s", lo, hi);
    }
    fprintf(out, "  %-30s %s [%s, default %s%s]\n", flag, o->help ? o->help : "", env, def, range);
}

void cxm_opts_usage(FILE *out, const char *prog, const char *summary, const cxm_opt *opts,
                    size_t nopts)
{
    fprintf(out, "usage: %s [options]\n", prog);
    if (summary && *summary)
        fprintf(out, "%s\n", summary);
    fprintf(out, "\noptions (each also a CXM_* environment variable; a flag wins):\n");
    for (size_t i = 0; i < nopts; i++)
        if (find(opts, i, opts[i].name, strlen(opts[i].name)) == NULL) /* shared: once */
            usage_line(out, &opts[i]);
}
