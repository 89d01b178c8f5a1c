/*
 * cxmctl.h - what the parts of cxmctl share: the invocation state, the
 * command table, argument parsing, calling an RPC, and printing messages.
 *
 * main.c owns dispatch, the global flags and the helpers below except
 * printing; print.c prints any protobuf-c message as JSON or as aligned
 * text; profile_cmd.c, journey_cmd.c, feedback_cmd.c and reco_cmd.c (the
 * personalisation service) hold the commands of their service; suggest.c
 * finds what a mistyped word meant and reads durations.
 */
#ifndef CXMCTL_H
#define CXMCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <protobuf-c/protobuf-c.h>

#include "cxm/arena.h"
#include "cxm/client.h"
#include "cxm/opts.h"
#include "cxm/v1/common.pb-c.h"

/* Exit statuses: 1 for a failed RPC, 2 for bad usage. */
enum { CXMCTL_FAILED = 1, CXMCTL_USAGE = 2 };

/* Returned by cxmctl_parse() when the command should go on. */
#define CXMCTL_CONTINUE (-1)

struct cxmctl_command;

/* One invocation. Everything a command allocates lives in arena and is
 * released once when cxmctl exits. */
typedef struct ctl {
    const char *target;
    bool json;
    int64_t timeout_ms;
    const char *token, *token_file; /* bearer token, or the file holding it */
    cxm_channel_opts chan; /* TLS from --tls-ca, --tls-cert, --tls-key, --tls-server-name */
    cxm_channel *ch;       /* opened by the first call */
    cxm_arena arena;
    const struct cxmctl_command *cmd; /* the command running, for its usage */
    const cxm_opt *opts;              /* the global options, for suggestions */
    size_t nopts;
} ctl;

typedef struct cxmctl_command {
    const char *name; /* "health", "profile get", ... */
    const char *args;
    const char *help;
    const char *example; /* arguments only; "cxmctl NAME" is prepended */
    int (*run)(ctl *c, int argc, char **argv);
} cxmctl_command;

extern const cxmctl_command cxmctl_profile_commands[];
extern const size_t cxmctl_profile_ncommands;
extern const cxmctl_command cxmctl_bus_commands[];
extern const size_t cxmctl_bus_ncommands;
extern const cxmctl_command cxmctl_journey_commands[];
extern const size_t cxmctl_journey_ncommands;
extern const cxmctl_command cxmctl_feedback_commands[];
extern const size_t cxmctl_feedback_ncommands;
extern const cxmctl_command cxmctl_reco_commands[];
extern const size_t cxmctl_reco_ncommands;

/* Open c->ch to c->target (with the bearer token) unless open. Returns 0,
 * or CXMCTL_FAILED after saying why on stderr. */
int cxmctl_open_channel(ctl *c);

/* A flag of one command. Declared by the command with name, metavar and
 * repeat; cxmctl_parse() fills v and n. */
typedef struct cxmctl_flag {
    const char *name;    /* "identity" for --identity */
    const char *metavar; /* NULL for a switch, which takes no value */
    bool repeat;         /* may be given more than once */
    const char **v;      /* the values in command-line order ("true" for a switch) */
    size_t n;
} cxmctl_flag;

/* Parse the arguments of c->cmd: flags into flags[], the rest into *pos
 * (*npos of them, between min_pos and max_pos). Prints the command's usage
 * for --help (returns 0) and on a mistake (returns CXMCTL_USAGE); returns
 * CXMCTL_CONTINUE when the command should run. */
int cxmctl_parse(ctl *c, int argc, char **argv, cxmctl_flag *const *flags, size_t nflags,
                 size_t min_pos, size_t max_pos, char ***pos, size_t *npos);

/* Report a usage mistake in the running command, with its usage line;
 * returns CXMCTL_USAGE. */
int cxmctl_usage_error(const ctl *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Call service/method with req. Returns 0 with *resp (in c->arena) on
 * status OK; otherwise prints "cxmctl: METHOD: STATUS: message" and
 * returns CXMCTL_FAILED. */
int cxmctl_call(ctl *c, const ProtobufCServiceDescriptor *service, const char *method,
                const ProtobufCMessage *req, ProtobufCMessage **resp);

/* cxmctl_call(), then print the response as --json says; an exit status. */
int cxmctl_call_print(ctl *c, const ProtobufCServiceDescriptor *service, const char *method,
                      const ProtobufCMessage *req);

/* Print the failure of an RPC the one way scripts and people both read;
 * returns CXMCTL_FAILED. */
int cxmctl_rpc_failed(const char *method, grpc_status_code status, const char *details);

/* --- args.c: the argument syntax the commands share --- */

/* Characters of caller-chosen names ([A-Za-z0-9_.-]). */
extern const char cxmctl_name_chars[];

/* A message of type d, or an array of n elements of size bytes (zeroed), in
 * the invocation's arena. Running out of memory in a command-line tool
 * leaves nothing to recover, so both exit. */
void *cxmctl_new_message(ctl *c, const ProtobufCMessageDescriptor *d);
void *cxmctl_new_array(ctl *c, size_t n, size_t size);

/* The flag's first value, NULL when it was not given. */
const char *cxmctl_flag_value(const cxmctl_flag *f);

/* 0 when f was given, else a usage error saying it is required. */
int cxmctl_require(const ctl *c, const cxmctl_flag *f);

/* An unsigned decimal no larger than max, all of s; 0 or a usage error
 * naming what. */
int cxmctl_parse_uint(const ctl *c, const char *what, const char *s, uint64_t max, uint64_t *out);

/* Milliseconds since the epoch, or RFC 3339 ("2024-05-01T10:00:00.5+02:00",
 * "2024-05-01T10:00:00Z"), or a date alone meaning its midnight UTC. 0 or
 * -1, without a message. */
int cxmctl_parse_time(const char *s, int64_t *out);

/* A finite number, all of s. 0 or -1. */
int cxmctl_parse_number(const char *s, double *out);

/* A number or true/false into v. 0 or -1. */
int cxmctl_parse_literal(const char *s, Cxm__V1__Value *v);

/* A time (as cxmctl_parse_time) into v as a timestamp. 0 or -1. */
int cxmctl_parse_timestamp_value(const char *s, Cxm__V1__Value *v);

/* The len bytes at s, copied, into v as a string. */
void cxmctl_string_value(ctl *c, const char *s, size_t len, Cxm__V1__Value *v);

/* A value typed by its look: @TIME a timestamp, "text" a string, a number,
 * true/false, else plain text. 0 or -1. */
int cxmctl_typed_value(ctl *c, const char *s, Cxm__V1__Value *v);

/* TYPE:VALUE (custom:NAME:VALUE) into id; 0 or a usage error. */
int cxmctl_parse_identity(ctl *c, const char *s, Cxm__V1__Identity *id);

/* A new identity parsed from s; *rc is 0 or a usage error's status. */
Cxm__V1__Identity *cxmctl_new_identity(ctl *c, const char *s, int *rc);

/* The customer a command names: the ID argument (consumed from *pos when
 * there are more than nother positional arguments), or --identity. 0 or a
 * usage error. */
int cxmctl_customer_ref(ctl *c, const cxmctl_flag *identity, char ***pos, size_t *npos,
                        size_t nother, Cxm__V1__CustomerRef **out);

/* An enum value from its short word (cxmctl_enum_parse); on a mistake,
 * prints the words it takes and returns CXMCTL_USAGE. */
int cxmctl_parse_enum(const ctl *c, const ProtobufCEnumDescriptor *e, const char *what,
                      const char *word, int *value);

/* --- args.c: times, windows and the flags journey and feedback share --- */

/* Milliseconds since the epoch, now. */
int64_t cxmctl_wall_ms(void);

/* A duration as cxmctl_duration_parse() reads it, or whole days ("7d") or
 * weeks ("2w"), which windows are usually counted in. 0 or -1. */
int cxmctl_window_parse(const char *s, int64_t *ms);

/* Flag f (when given) as a window duration, a time (ago: or a duration that
 * long ago), a uint no larger than max, an enum word; 0 or a usage error. */
int cxmctl_duration_flag(const ctl *c, const cxmctl_flag *f, int64_t *ms);
int cxmctl_time_flag(const ctl *c, const cxmctl_flag *f, bool ago, int64_t *out);
int cxmctl_uint_flag(const ctl *c, const cxmctl_flag *f, uint64_t max, uint64_t *out);
int cxmctl_enum_flag(const ctl *c, const cxmctl_flag *f, const ProtobufCEnumDescriptor *e, int *v);

/* --from and --to into a TimeRange (NULL when neither is given); need:
 * --from is required and --to defaults to now. 0 or a usage error. */
int cxmctl_range_flags(ctl *c, const cxmctl_flag *from, const cxmctl_flag *to, bool need,
                       Cxm__V1__TimeRange **out);

/* A channel word, and every value of a repeated --channel. */
int cxmctl_channel_word(const ctl *c, const char *what, const char *word, Cxm__V1__Channel *out);
int cxmctl_channels_flag(ctl *c, const cxmctl_flag *f, Cxm__V1__Channel **out, size_t *n);

/* The values of a repeated flag as a protobuf-c string array. */
char **cxmctl_strings_flag(const cxmctl_flag *f);

/* --- print.c --- */

/* One message as a single line of JSON, in the proto3 JSON mapping with the
 * field names of the .proto (see print.c for the details). */
void cxmctl_print_json(FILE *out, const ProtobufCMessage *m);

/* The same JSON object without the line end, to embed in a larger one. */
void cxmctl_print_json_object(FILE *out, const ProtobufCMessage *m);

/* One message as aligned "key  value" lines, nested messages indented. */
void cxmctl_print_text(FILE *out, const ProtobufCMessage *m);

/* The value of an enum as written on the command line and in text output:
 * the value name without the prefix all the enum's names share, lower-case,
 * '-' for '_' (MERGE_STRATEGY_KEEP_FIRST -> "keep-first"). */
void cxmctl_enum_short(FILE *out, const ProtobufCEnumDescriptor *e, int value);

/* The inverse of cxmctl_enum_short(); '_' is accepted for '-', case is
 * ignored. The zero (UNSPECIFIED) value is never matched. 0 or -1. */
int cxmctl_enum_parse(const ProtobufCEnumDescriptor *e, const char *word, int *value);

/* The identity type words of TYPE:VALUE ("email", "custom", ...), indexed by
 * Cxm__V1__IdentityType; NULL for UNSPECIFIED. */
extern const char *const cxmctl_identity_types[];
extern const size_t cxmctl_nidentity_types;

/* Print a time in milliseconds since the epoch as RFC 3339 UTC. */
void cxmctl_print_time(FILE *out, int64_t unix_ms);

/* --- json_in.c --- */

/* A message of type d from the len bytes of JSON at text (the proto3 JSON
 * mapping, field names as in the .proto or lowerCamelCase, enums by name,
 * short word or number), in the invocation's arena. 0, or -1 with a sentence
 * naming the field path in err ("survey.questions[1].kind: ..."). */
int cxmctl_json_message(ctl *c, const char *text, size_t len, const ProtobufCMessageDescriptor *d,
                        ProtobufCMessage **out, char *err, size_t errlen);

/* --- suggest.c --- */

/* The candidate closest to the len bytes at word ("tagret" -> "target"),
 * or NULL when none is within one edit per three characters (at least one)
 * and the mistake is better reported without a guess. A candidate ends at
 * its first blank, so "profile get" stands for "profile". */
const char *cxmctl_suggest(const char *word, size_t len, const char *const *candidates, size_t n);

/* A duration with its unit, "200ms", "5s", "2m" or "1h", into *ms; 0, or -1
 * for anything else. A bare number is refused: it reads as seconds to some
 * and milliseconds to others. */
int cxmctl_duration_parse(const char *s, int64_t *ms);

#endif
