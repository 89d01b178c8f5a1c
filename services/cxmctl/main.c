/*
 * cxmctl - the cxm command-line client.
 *
 *   cxmctl [--target HOST:PORT] [--json] [--timeout DURATION]
 *          [--token TOKEN | --token-file FILE] [--tls-ca FILE
 *          [--tls-cert FILE --tls-key FILE] [--tls-server-name NAME]] COMMAND [ARGS]
 *
 * Readable output by default, one JSON object per result with --json. Exits
 * 0 on success, 1 with the server's status and message on an RPC error, 2 on
 * bad usage. This file holds dispatch, the global flags and the helpers every
 * command uses; the profile commands are in profile_cmd.c, printing in
 * print.c.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cxm/err.h"
#include "cxm/opts.h"
#include "cxmctl.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"

/* "NAME ARGS", without a trailing blank for a command that takes none. */
static void name_args(FILE *out, const cxmctl_command *cmd, const char *args)
{
    fprintf(out, "%s%s%s", cmd->name, *args ? " " : "", args);
}

static void command_usage(FILE *out, const cxmctl_command *cmd)
{
    fputs("usage: cxmctl ", out);
    name_args(out, cmd, cmd->args);
    fprintf(out, "\n  %s\n  example: cxmctl ", cmd->help);
    name_args(out, cmd, cmd->example);
    fputc('\n', out);
}

int cxmctl_usage_error(const ctl *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cxmctl: %s: ", c->cmd->name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    command_usage(stderr, c->cmd);
    return CXMCTL_USAGE;
}

static cxmctl_flag *find_flag(cxmctl_flag *const *flags, size_t nflags, const char *name,
                              size_t len)
{
    for (size_t i = 0; i < nflags; i++)
        if (strlen(flags[i]->name) == len && memcmp(flags[i]->name, name, len) == 0)
            return flags[i];
    return NULL;
}

/* The command's flag or global option that the len bytes at name most
 * likely meant, or NULL. */
static const char *guess_option(const ctl *c, cxmctl_flag *const *flags, size_t nflags,
                                const char *name, size_t len)
{
    const char *names[64];
    size_t n = 0;
    for (size_t i = 0; i < nflags && n < 64; i++)
        names[n++] = flags[i]->name;
    for (size_t i = 0; i < c->nopts && n < 64; i++)
        names[n++] = c->opts[i].name;
    return cxmctl_suggest(name, len, names, n);
}

/* One "--name[=value]" at argv[*i]; may consume the next argument. Mirrors
 * cxm_opts_parse(), which cannot collect a flag given many times. */
static int parse_flag(ctl *c, int argc, char **argv, int *i, cxmctl_flag *const *flags,
                      size_t nflags)
{
    const char *arg = argv[*i] + 2;
    const char *eq = strchr(arg, '=');
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    cxmctl_flag *f = find_flag(flags, nflags, arg, len);
    const char *guess = f ? NULL : guess_option(c, flags, nflags, arg, len);
    if (!f)
        return cxmctl_usage_error(c, "unknown option --%.*s%s%s%s", (int)len, arg,
                                  guess ? "; did you mean --" : "", guess ? guess : "",
                                  guess ? "?" : "");
    if (f->n > 0 && !f->repeat)
        return cxmctl_usage_error(c, "--%s given twice", f->name);
    const char *value = eq ? eq + 1 : NULL;
    if (!f->metavar && value)
        return cxmctl_usage_error(c, "--%s takes no value", f->name);
    if (!f->metavar)
        value = "true";
    /* "--reason --json" almost always means a forgotten value. */
    if (!value && (*i + 1 >= argc || strncmp(argv[*i + 1], "--", 2) == 0))
        return cxmctl_usage_error(c, "--%s needs a value %s", f->name, f->metavar);
    if (!value)
        value = argv[++*i];
    if (!f->v && !(f->v = cxm_arena_calloc(&c->arena, (size_t)argc, sizeof *f->v)))
        return cxmctl_usage_error(c, "out of memory");
    f->v[f->n++] = value;
    return CXMCTL_CONTINUE;
}

int cxmctl_parse(ctl *c, int argc, char **argv, cxmctl_flag *const *flags, size_t nflags,
                 size_t min_pos, size_t max_pos, char ***pos, size_t *npos)
{
    char **out = cxm_arena_calloc(&c->arena, (size_t)argc + 1, sizeof *out);
    if (!out)
        return cxmctl_usage_error(c, "out of memory");
    size_t n = 0;
    bool only_positional = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int rc = CXMCTL_CONTINUE;
        if (!only_positional && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0))
            return (command_usage(stdout, c->cmd), 0);
        if (!only_positional && strcmp(a, "--") == 0)
            only_positional = true;
        else if (!only_positional && strncmp(a, "--", 2) == 0)
            rc = parse_flag(c, argc, argv, &i, flags, nflags);
        else
            out[n++] = argv[i];
        if (rc != CXMCTL_CONTINUE)
            return rc;
    }
    if (n < min_pos || n > max_pos)
        return cxmctl_usage_error(c, "expects %s%zu argument%s, got %zu",
                                  min_pos == max_pos ? ""
                                  : n < min_pos      ? "at least "
                                                     : "at most ",
                                  n < min_pos ? min_pos : max_pos,
                                  (n < min_pos ? min_pos : max_pos) == 1 ? "" : "s", n);
    *pos = out;
    *npos = n;
    return CXMCTL_CONTINUE;
}

int cxmctl_rpc_failed(const char *method, grpc_status_code status, const char *details)
{
    fprintf(stderr, "cxmctl: %s: %s: %s\n", method, cxm_status_name(status),
            details ? details : "");
    return CXMCTL_FAILED;
}

/* The channel is opened on the first call so that usage errors and --help
 * never pay for grpc_init(). */
int cxmctl_open_channel(ctl *c)
{
    if (c->ch)
        return 0;
    cxm_channel_opts o = c->chan;
    char *token = NULL;
    char err[512];
    if (cxm_client_token_pick(c->token, c->token_file, &token, err, sizeof err) != 0) {
        fprintf(stderr, "cxmctl: --token / --token-file (CXM_TOKEN / CXM_TOKEN_FILE): %s\n", err);
        return CXMCTL_FAILED;
    }
    o.token = token;
    int rc = cxm_channel_open(c->target, &o, &c->ch);
    free(token); /* the channel keeps its own copy */
    if (rc != 0) {
        fprintf(stderr, "cxmctl: cannot open a channel to %s: %s\n", c->target,
                cxm_channel_last_error());
        return CXMCTL_FAILED;
    }
    return 0;
}

int cxmctl_call(ctl *c, const ProtobufCServiceDescriptor *service, const char *method,
                const ProtobufCMessage *req, ProtobufCMessage **resp)
{
    const ProtobufCMethodDescriptor *m =
        protobuf_c_service_descriptor_get_method_by_name(service, method);
    if (!m || m->input != req->descriptor) {
        fprintf(stderr, "cxmctl: %s: no such method of %s taking %s\n", method, service->name,
                req->descriptor->name);
        return CXMCTL_FAILED;
    }
    if (cxmctl_open_channel(c) != 0)
        return CXMCTL_FAILED;
    char path[256];
    snprintf(path, sizeof path, "/%s/%s", service->name, method);
    cxm_client_result r = {0};
    int rc = cxm_client_unary_pb(c->ch, path, req, m->output, &c->arena, c->timeout_ms, resp, &r);
    int exit_code = 0;
    if (rc != 0)
        exit_code = (fprintf(stderr, "cxmctl: %s: %s\n", method, cxm_strerror(rc)), 1);
    else if (r.status != GRPC_STATUS_OK)
        exit_code = cxmctl_rpc_failed(method, r.status, r.details);
    cxm_client_result_dispose(&r);
    return exit_code;
}

static void print_message(const ctl *c, const ProtobufCMessage *m)
{
    if (c->json)
        cxmctl_print_json(stdout, m);
    else
        cxmctl_print_text(stdout, m);
}

int cxmctl_call_print(ctl *c, const ProtobufCServiceDescriptor *service, const char *method,
                      const ProtobufCMessage *req)
{
    ProtobufCMessage *resp = NULL;
    int rc = cxmctl_call(c, service, method, req, &resp);
    if (rc == 0)
        print_message(c, resp);
    return rc;
}

static int cmd_health(ctl *c, int argc, char **argv)
{
    char **pos;
    size_t npos;
    int rc = cxmctl_parse(c, argc, argv, NULL, 0, 0, 1, &pos, &npos);
    if (rc != CXMCTL_CONTINUE)
        return rc;
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = npos > 0 ? pos[0] : "";
    ProtobufCMessage *resp = NULL;
    rc = cxmctl_call(c, &grpc__health__v1__health__descriptor, "Check", &req.base, &resp);
    if (rc != 0)
        return rc;
    const Grpc__Health__V1__HealthCheckResponse *h = (const void *)resp;
    if (c->json) {
        print_message(c, resp);
    } else {
        /* The full upper-case name, as scripts before --json parsed it. */
        const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
            &grpc__health__v1__health_check_response__serving_status__descriptor, h->status);
        printf("%s: %s\n", *req.service ? req.service : c->target, v ? v->name : "UNKNOWN");
    }
    return h->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
               ? 0
               : CXMCTL_FAILED;
}

static void print_services(const ctl *c, const Grpc__Reflection__V1__ListServiceResponse *ls)
{
    if (c->json) {
        print_message(c, &ls->base);
        return;
    }
    for (size_t i = 0; i < ls->n_service; i++)
        printf("%s\n", ls->service[i]->name);
}

static const char reflection_method[] = "ServerReflectionInfo";

static int cmd_services(ctl *c, int argc, char **argv)
{
    char **pos;
    size_t npos;
    int rc = cxmctl_parse(c, argc, argv, NULL, 0, 0, 0, &pos, &npos);
    if (rc != CXMCTL_CONTINUE || (rc = cxmctl_open_channel(c)) != 0)
        return rc;
    Grpc__Reflection__V1__ServerReflectionRequest req =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    req.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
    req.list_services = "";
    uint8_t buf[64];
    size_t len = grpc__reflection__v1__server_reflection_request__pack(&req, buf);

    cxm_client_stream *s = NULL;
    if (cxm_client_stream_open(c->ch, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                               c->timeout_ms, &s) != 0) {
        fprintf(stderr, "cxmctl: cannot open a reflection stream to %s\n", c->target);
        return CXMCTL_FAILED;
    }
    uint8_t *msg = NULL;
    size_t msg_len = 0;
    int got = 0;
    if (cxm_client_stream_send(s, buf, len) == 0 && cxm_client_stream_close_send(s) == 0)
        got = cxm_client_stream_recv(s, &msg, &msg_len);
    cxm_client_result r = {0};
    cxm_client_stream_finish(s, &r);
    int exit_code = 0;
    Grpc__Reflection__V1__ServerReflectionResponse *resp =
        got == 1 ? grpc__reflection__v1__server_reflection_response__unpack(
                       cxm_arena_protobuf(&c->arena), msg_len, msg)
                 : NULL;
    if (r.status != GRPC_STATUS_OK)
        exit_code = cxmctl_rpc_failed(reflection_method, r.status, r.details);
    else if (
        !resp ||
        resp->message_response_case !=
            GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE)
        exit_code = (fprintf(stderr, "cxmctl: %s sent no service list\n", c->target), 1);
    else
        print_services(c, resp->list_services_response);
    free(msg);
    cxm_client_result_dispose(&r);
    return exit_code;
}

static const cxmctl_command base_commands[] = {
    {"health", "[SERVICE]", "ask grpc.health.v1.Health/Check; exit 0 only when SERVING",
     "cxm.v1.ProfileService", cmd_health},
    {"services", "", "list the services the server offers (server reflection)", "", cmd_services},
};

/* Every command, in the order usage lists them. */
static const struct {
    const cxmctl_command *list;
    const size_t *n;
} groups[] = {
    {base_commands, &(const size_t){sizeof base_commands / sizeof base_commands[0]}},
    {cxmctl_profile_commands, &cxmctl_profile_ncommands},
    {cxmctl_journey_commands, &cxmctl_journey_ncommands},
    {cxmctl_feedback_commands, &cxmctl_feedback_ncommands},
    {cxmctl_reco_commands, &cxmctl_reco_ncommands},
    {cxmctl_bus_commands, &cxmctl_bus_ncommands},
};
#define NGROUPS (sizeof groups / sizeof groups[0])

static const char syntax_help[] =
    "\nsyntax:\n"
    "  TYPE:VALUE     an identity; TYPE is email, phone, device, anonymous, crm, customer\n"
    "                 or custom:NAME (custom:loyalty_card:L-1234)\n"
    "  --set          NAME=TEXT sets a string, NAME:=LITERAL a number or bool (visits:=3,\n"
    "                 vip:=true), NAME@=TIME a timestamp (RFC 3339 or unix ms)\n"
    "  COND           attr.NAME or trait.NAME, an operator (= != < <= > >= ^= for a prefix,\n"
    "                 ~= for contains) and a value, or NAME? for \"is set\". A value is a\n"
    "                 number, true/false, @TIME, \"quoted\" text or else plain text\n"
    "  TIME           2024-05-01T10:00:00Z, 2024-05-01T12:00:00.5+02:00, 2024-05-01 or\n"
    "                 milliseconds since the epoch; journey's --from, --to and --at also\n"
    "                 take a DURATION meaning that long ago (--from 30d)\n"
    "  DURATION       500ms, 30s, 5m, 2h, and for journey 7d or 2w\n"
    "  --prop         NAME=VALUE, the value typed by its look as in COND (price=59000,\n"
    "                 gift=true, note=\"42\")\n"
    "  STEP           a funnel step TYPE[@TOUCHPOINT][#CHANNEL]: page_view@product_page,\n"
    "                 purchase#web, @checkout\n";

/* Whether name is a command of group: "profile get" of "profile". */
static bool in_group(const char *name, const char *group)
{
    size_t len = strcspn(name, " ");
    return name[len] && strlen(group) == len && strncmp(name, group, len) == 0;
}

/* The words naming commands, each ending at a blank or the end: the first
 * word of every command when group is NULL ("health", "profile get", ...),
 * else the second word of the commands of group ("get", "upsert", ...).
 * Returns how many were stored in out. */
static size_t command_words(const char *group, const char **out, size_t cap)
{
    size_t n = 0;
    for (size_t g = 0; g < NGROUPS; g++)
        for (size_t i = 0; i < *groups[g].n && n < cap; i++) {
            const char *name = groups[g].list[i].name;
            if (!group)
                out[n++] = name;
            else if (in_group(name, group))
                out[n++] = name + strcspn(name, " ") + 1;
        }
    return n;
}

/* Every command of group (every command when NULL), as usage lists them. */
static void list_commands(FILE *out, const char *group)
{
    for (size_t g = 0; g < NGROUPS; g++)
        for (size_t i = 0; i < *groups[g].n; i++) {
            const cxmctl_command *cmd = &groups[g].list[i];
            if (group && !in_group(cmd->name, group))
                continue;
            fputs("  ", out);
            name_args(out, cmd, cmd->args);
            fprintf(out, "\n      %s\n      e.g. cxmctl ", cmd->help);
            name_args(out, cmd, cmd->example);
            fputc('\n', out);
        }
}

static void usage(FILE *out, const ctl *c)
{
    cxm_opts_usage(out, "cxmctl", "the cxm command-line client: cxmctl [options] COMMAND [ARGS]",
                   c->opts, c->nopts);
    fputs("\ncommands (global options may also follow the command):\n", out);
    list_commands(out, NULL);
    fputs(syntax_help, out);
}

/* A mistake before any command is known: the whole usage would bury it. */
static int global_usage_error(void)
{
    fputs("cxmctl: run \"cxmctl --help\" for the commands and options\n", stderr);
    return CXMCTL_USAGE;
}

/* word was not a command (in group, when not NULL): say so, with the
 * command it most likely meant. */
static void unknown_command(const char *group, const char *word)
{
    const char *words[64];
    size_t n = command_words(group, words, 64);
    const char *guess = cxmctl_suggest(word, strlen(word), words, n);
    int glen = guess ? (int)strcspn(guess, " ") : 0;
    fprintf(stderr, "cxmctl: unknown command \"%s%s%s\"", group ? group : "", group ? " " : "",
            word);
    if (guess)
        fprintf(stderr, "; did you mean \"%s%s%.*s\"?", group ? group : "", group ? " " : "", glen,
                guess);
    fputc('\n', stderr);
}

/* An option that is neither global nor after a command: "--tagret". */
static int unknown_global_option(const ctl *c, const char *arg)
{
    const char *name = arg + strspn(arg, "-");
    size_t len = strcspn(name, "=");
    const char *guess = guess_option(c, NULL, 0, name, len);
    fprintf(stderr, "cxmctl: unknown option %.*s%s%s%s\n", (int)(name - arg + len), arg,
            guess ? "; did you mean --" : "", guess ? guess : "", guess ? "?" : "");
    return global_usage_error();
}

static bool is_help(const char *a)
{
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

/* "cxmctl feedback survey" alone lists the commands starting with those
 * two words; false when there are none. */
static bool subgroup_usage(const char *group, const char *word)
{
    char prefix[128];
    int len = snprintf(prefix, sizeof prefix, "%s %s ", group, word);
    bool any = false;
    for (size_t g = 0; g < NGROUPS; g++)
        for (size_t i = 0; i < *groups[g].n; i++) {
            const cxmctl_command *cmd = &groups[g].list[i];
            if (len <= 0 || (size_t)len >= sizeof prefix || strncmp(cmd->name, prefix, (size_t)len))
                continue;
            if (!any)
                printf("%s %s commands:\n", group, word);
            any = true;
            fputs("  ", stdout);
            name_args(stdout, cmd, cmd->args);
            printf("\n      %s\n", cmd->help);
        }
    return any;
}

/* "cxmctl profile" alone or with --help lists the profile commands. */
static int group_usage(const ctl *c, size_t argc, char **argv)
{
    if (argc > 1 && !is_help(argv[1]) && argv[1][0] != '-' && subgroup_usage(argv[0], argv[1]))
        return 0;
    if (argc > 1 && !is_help(argv[1])) {
        if (argv[1][0] == '-')
            return unknown_global_option(c, argv[1]);
        unknown_command(argv[0], argv[1]);
        fprintf(stderr, "cxmctl: run \"cxmctl %s\" for its commands\n", argv[0]);
        return CXMCTL_USAGE;
    }
    printf("usage: cxmctl %s COMMAND [ARGS] (\"cxmctl %s COMMAND --help\" for one)\n\n"
           "%s commands:\n",
           argv[0], argv[0], argv[0]);
    list_commands(stdout, argv[0]);
    return 0;
}

/* Words of name matched against argv ("profile get" the first two,
 * "feedback survey get" three); 0 when they differ. */
static int match_words(const char *name, size_t argc, char **argv)
{
    size_t w = 0;
    for (const char *p = name; *p; w++) {
        size_t len = strcspn(p, " ");
        if (w >= argc || strlen(argv[w]) != len || memcmp(argv[w], p, len) != 0)
            return 0;
        p += len + (p[len] == ' ');
    }
    return (int)w;
}

/* The command argv names; returns how many words named it, 0 when none. */
static int find_command(size_t argc, char **argv, const cxmctl_command **out)
{
    for (size_t g = 0; g < NGROUPS; g++)
        for (size_t i = 0; i < *groups[g].n; i++) {
            int words = match_words(groups[g].list[i].name, argc, argv);
            if (words) {
                *out = &groups[g].list[i];
                return words;
            }
        }
    return 0;
}

/* Split argv into the global flags (wherever they stand, so that
 * "cxmctl profile get X --json" works) and the rest, which names and feeds
 * the command. A flag's separate value goes with it. */
static void split_globals(const cxm_opt *opts, size_t nopts, int argc, char **argv, char **global,
                          int *nglobal, char **rest, size_t *nrest)
{
    global[(*nglobal)++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const cxm_opt *o = NULL;
        size_t len = strcspn(a + 2, "=");
        for (size_t k = 0; strncmp(a, "--", 2) == 0 && k < nopts && !o; k++)
            if (strlen(opts[k].name) == len && strncmp(opts[k].name, a + 2, len) == 0)
                o = &opts[k];
        if (strcmp(a, "--") == 0) {
            while (i < argc)
                rest[(*nrest)++] = argv[i++];
        } else if (!o) {
            rest[(*nrest)++] = argv[i];
        } else {
            global[(*nglobal)++] = argv[i];
            if (o->type != CXM_OPT_BOOL && a[2 + len] != '=' && i + 1 < argc)
                global[(*nglobal)++] = argv[++i];
        }
    }
}

static int run(ctl *c, size_t argc, char **argv)
{
    if (argc == 0)
        return (fputs("cxmctl: no command given\n", stderr), global_usage_error());
    int words = find_command(argc, argv, &c->cmd);
    const char *group_words[1];
    if (words > 0)
        return c->cmd->run(c, (int)argc - words, argv + words);
    if (is_help(argv[0]))
        return (usage(stdout, c), 0);
    if (argv[0][0] == '-')
        return unknown_global_option(c, argv[0]);
    if (command_words(argv[0], group_words, 1) > 0)
        return group_usage(c, argc, argv);
    unknown_command(NULL, argv[0]);
    return global_usage_error();
}

/* --timeout, parsed here rather than as a CXM_OPT_MILLIS so that a bare
 * number, which that reads as milliseconds, is refused. */
static int parse_timeout(ctl *c, const char *value)
{
    if (cxmctl_duration_parse(value, &c->timeout_ms) == 0 && c->timeout_ms >= 1 &&
        c->timeout_ms <= 3600000)
        return 0;
    fprintf(stderr,
            "cxmctl: --timeout \"%s\" (or CXM_TIMEOUT): give a duration from 1ms to 1h with "
            "its unit, such as 200ms, 5s or 2m\n",
            value);
    return global_usage_error();
}

int main(int argc, char **argv)
{
    const char *timeout = "5s";
    ctl c = {.target = "127.0.0.1:7400"};
    const cxm_opt opts[] = {
        {"target", CXM_OPT_STR, &c.target, 0, 0, "server address HOST:PORT"},
        {"json", CXM_OPT_BOOL, &c.json, 0, 0, "print results as JSON"},
        {"timeout", CXM_OPT_STR, &timeout, 0, 0,
         "deadline of each call, with its unit: 200ms, 5s, 2m (a bare number is refused)"},
        CXM_CLIENT_TOKEN_OPTS(&c.token, &c.token_file),
        CXM_CHANNEL_TLS_OPTS(c.chan),
    };
    c.opts = opts;
    c.nopts = sizeof opts / sizeof opts[0];
    char **global = calloc((size_t)argc + 1, sizeof *global);
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    if (!global || !rest)
        return (fprintf(stderr, "cxmctl: out of memory\n"), 1);
    int nglobal = 0;
    size_t nrest = 0;
    split_globals(opts, c.nopts, argc, argv, global, &nglobal, rest, &nrest);
    char err[256];
    int rc = cxm_opts_parse(opts, c.nopts, nglobal, global, NULL, NULL, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "cxmctl: %s\n", err);
        rc = global_usage_error();
    } else if ((nrest > 0 && is_help(rest[0])) || (rc = parse_timeout(&c, timeout)) == 0) {
        cxm_arena_init(&c.arena, NULL, 0, 0);
        rc = run(&c, nrest, rest);
        if (c.ch)
            cxm_channel_close(c.ch);
        cxm_arena_dispose(&c.arena);
    }
    free(global);
    free(rest);
    return rc;
}
