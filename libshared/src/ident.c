/*
 * ident.c - identity normalisation, junk detection and the checks of
 * Identity and CustomerRef messages (see ident.h).
 */
#include "cxm/ident.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "cxm/err.h"
#include "cxm/svc.h"

/* Values that clients send when they have no identity at all. */
static const char *const placeholders[] = {
    "null", "nil", "none", "undefined", "anonymous", "unknown",        "n/a",
    "na",   "0",   "-1",   "test",      "(null)",    "[object object]"};

/* All dashes, or zeros (with any dashes, as in an all-zero UUID, or a
 * leading "+", as in a normalised all-zero phone number). */
static bool only_zeros_and_dashes(const char *s)
{
    for (s += *s == '+'; *s; s++)
        if (*s != '0' && *s != '-')
            return false;
    return true;
}

static bool is_junk(const cxm_ident_config *cfg, const char *v)
{
    for (size_t i = 0; i < sizeof placeholders / sizeof placeholders[0]; i++)
        if (strcasecmp(v, placeholders[i]) == 0)
            return true;
    if (only_zeros_and_dashes(v))
        return true;
    for (size_t i = 0; cfg && i < cfg->nblocklist; i++)
        if (strcasecmp(v, cfg->blocklist[i]) == 0)
            return true;
    return false;
}

/* Copy s without leading and trailing white space. */
static size_t trim_copy(const char *s, size_t len, char *out)
{
    while (len && isspace((unsigned char)*s))
        s++, len--;
    while (len && isspace((unsigned char)s[len - 1]))
        len--;
    memcpy(out, s, len);
    out[len] = '\0';
    return len;
}

static int normalize_email(char *v, const char **why)
{
    for (char *p = v; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    const char *at = strchr(v, '@');
    if (!at || at == v || strchr(at + 1, '@') || !at[1] || !strchr(at + 1, '.') ||
        at[strlen(at) - 1] == '.' || strpbrk(v, " \t<>,;\"")) {
        *why = "is not an email address (expected local@domain.tld)";
        return CXM_EINVAL;
    }
    return 0;
}

/* E.164: "+82 10-1234-5678" -> +821012345678. */
static int normalize_phone(const cxm_ident_config *cfg, char *v, size_t *len, const char **why)
{
    const char *p = v;
    bool international = false;
    if (*p == '+') {
        international = true;
        p++;
    } else if (p[0] == '0' && p[1] == '0') {
        international = true;
        p += 2;
    }
    char digits[CXM_IDENT_MAX + 1];
    size_t n = 0;
    for (; *p; p++) {
        if (isdigit((unsigned char)*p))
            digits[n++] = *p;
        else if (!strchr(" -.()/", *p)) {
            *why = "is not a phone number (digits, spaces, dashes, dots and parentheses only, "
                   "led by +CC)";
            return CXM_EINVAL;
        }
    }
    digits[n] = '\0';
    if (n > 15) { /* with a country code of at most 4 digits, digits[] holds both */
        *why = "is not a phone number (8 to 15 digits with the country code)";
        return CXM_EINVAL;
    }
    const char *country = cfg ? cfg->default_phone_country : NULL;
    size_t cl = country ? strnlen(country, 5) : 0;
    if (!international) {
        /* A country code is 1 to 4 digits; a longer configured one must not
         * run past digits[]. */
        if (cl == 0 || cl > 4 || strspn(country, "0123456789") != cl || digits[0] != '0') {
            *why = "has no country prefix; write it as +CC... (or configure a default country)";
            return CXM_EINVAL;
        }
        /* National form: the trunk 0 gives way to the country code. */
        memmove(digits + cl, digits + 1, n); /* n - 1 digits and the NUL */
        memcpy(digits, country, cl);
        n = n - 1 + cl;
    }
    if (n < 8 || n > 15) {
        *why = "is not a phone number (8 to 15 digits with the country code)";
        return CXM_EINVAL;
    }
    /* E.164: "+" and the digits. */
    v[0] = '+';
    memcpy(v + 1, digits, n + 1);
    *len = n + 1;
    return 0;
}

int cxm_ident_normalize(const cxm_ident_config *cfg, cxm_ident_kind kind, const char *value,
                        size_t len, char *out, size_t *out_len, const char **why)
{
    if (len > CXM_IDENT_MAX) {
        *why = "is longer than 256 bytes";
        return CXM_EINVAL;
    }
    if (!cxm_svc_utf8_valid(value, len)) {
        *why = "is not valid UTF-8";
        return CXM_EINVAL;
    }
    size_t n = trim_copy(value, len, out);
    if (n == 0) {
        *why = "is empty";
        return CXM_EINVAL;
    }
    int rc = 0;
    if (kind == CXM_IDENT_EMAIL)
        rc = normalize_email(out, why);
    else if (kind == CXM_IDENT_PHONE)
        rc = normalize_phone(cfg, out, &n, why);
    if (rc != 0)
        return rc;
    if (is_junk(cfg, out)) {
        *why = "is a placeholder value, not an identity";
        return CXM_EINVAL;
    }
    *out_len = n;
    return 0;
}

const char *cxm_ident_type_name(Cxm__V1__IdentityType t)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&cxm__v1__identity_type__descriptor, (int)t);
    return v ? v->name : "?";
}

int cxm_ident_check(const cxm_ident_config *cfg, cxm_arena *a, Cxm__V1__Identity *id,
                    const char *field, char *err)
{
    cxm_svc_path f;
    if (!id || id->type <= CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_UNSPECIFIED ||
        id->type > CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CUSTOM)
        return cxm_svc_errf(err, CXM_EINVAL, cxm_svc_member(&f, field, "type"),
                            "an identity type is required (EMAIL, PHONE, ...)");
    bool custom = id->type == CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CUSTOM;
    if (custom != (id->custom_type && *id->custom_type) ||
        (custom && !cxm_svc_slug_valid(id->custom_type)))
        return cxm_svc_errf(err, CXM_EINVAL, cxm_svc_member(&f, field, "custom_type"),
                            "required for IDENTITY_TYPE_CUSTOM ([a-z0-9_.-], 1 to 64 bytes) "
                            "and forbidden otherwise");
    char *norm = cxm_arena_alloc(a, CXM_IDENT_MAX + 1);
    size_t n;
    const char *why = NULL;
    if (!norm)
        return CXM_ENOMEM;
    const char *v = id->value ? id->value : "";
    if (cxm_ident_normalize(cfg, (cxm_ident_kind)id->type, v, strlen(v), norm, &n, &why))
        return cxm_svc_errf(err, CXM_EINVAL, cxm_svc_member(&f, field, "value"), "\"%.64s\" %s", v,
                            why);
    id->value = norm;
    if (!custom)
        id->custom_type = "";
    return 0;
}

int cxm_ident_check_customer_id(const char *id, const char *field, char *err)
{
    return cxm_svc_check_text(id, 1, CXM_IDENT_MAX, field, err);
}

int cxm_ident_check_ref(const cxm_ident_config *cfg, cxm_arena *a, Cxm__V1__CustomerRef *ref,
                        const char *field, char *err)
{
    cxm_svc_path f;
    if (!ref || ref->key_case == CXM__V1__CUSTOMER_REF__KEY__NOT_SET)
        return cxm_svc_errf(err, CXM_EINVAL, field, "a customer_id or an identity is required");
    if (ref->key_case == CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID)
        return cxm_ident_check_customer_id(ref->customer_id,
                                           cxm_svc_member(&f, field, "customer_id"), err);
    return cxm_ident_check(cfg, a, ref->identity, cxm_svc_member(&f, field, "identity"), err);
}
