/*
 * test_ident.c - identity normalisation (every kind, the junk list, the
 * block list, limits) and the in-place checks of Identity and CustomerRef
 * messages with their field paths.
 */
#include "check.h"
#include "cxm/err.h"
#include "cxm/ident.h"
#include "cxm/svc.h"

static cxm_arena arena;

static const char *norm(cxm_ident_kind kind, const char *v, const cxm_ident_config *cfg)
{
    static char out[CXM_IDENT_MAX + 1];
    size_t n;
    const char *why;
    return cxm_ident_normalize(cfg, kind, v, strlen(v), out, &n, &why) == 0 ? out : "<refused>";
}

static void test_normalize(void)
{
    CHECK_EQ_STR(norm(CXM_IDENT_EMAIL, "  Ann@Example.COM\t", NULL), "ann@example.com");
    CHECK_EQ_STR(norm(CXM_IDENT_EMAIL, "ann@example", NULL), "<refused>");
    CHECK_EQ_STR(norm(CXM_IDENT_EMAIL, "@example.com", NULL), "<refused>");
    CHECK_EQ_STR(norm(CXM_IDENT_EMAIL, "a@@b.com", NULL), "<refused>");
    CHECK_EQ_STR(norm(CXM_IDENT_EMAIL, "ann@example.com.", NULL), "<refused>");
    CHECK_EQ_STR(norm(CXM_IDENT_PHONE, "+82 10-1234-5678", NULL), "+821012345678");
    CHECK_EQ_STR(norm(CXM_IDENT_PHONE, "0044 (7700) 900.123", NULL), "+447700900123");
    CHECK_EQ_STR(norm(CXM_IDENT_PHONE, "010-1234-5678", NULL), "<refused>");
    cxm_ident_config kr = {.default_phone_country = "82"};
    CHECK_EQ_STR(norm(CXM_IDENT_PHONE, "010-1234-5678", &kr), "+821012345678");
    /* A configured country that is no country code counts as none (a long
     * one used to run past the digits buffer). */
    char huge[300];
    memset(huge, '9', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    cxm_ident_config bad[] = {{.default_phone_country = huge},
                              {.default_phone_country = "12345"},
                              {.default_phone_country = "8x"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ_STR(norm(CXM_IDENT_PHONE, "010-1234-5678", &bad[i]), "<refused>");
    CHECK_EQ_STR(norm(CXM_IDENT_PHONE, "+1 555", NULL), "<refused>"); /* too short */
    CHECK_EQ_STR(norm(CXM_IDENT_PHONE, "+1 555 CALL NOW", NULL), "<refused>");
    CHECK_EQ_STR(norm(CXM_IDENT_PHONE, "+1234567890123456", NULL), "<refused>"); /* 16 digits */
    CHECK_EQ_STR(norm(CXM_IDENT_DEVICE_ID, " AbC-123 ", NULL), "AbC-123");       /* case kept */
    CHECK_EQ_STR(norm(CXM_IDENT_CUSTOM, "Card 7", NULL), "Card 7");
}

static void test_junk(void)
{
    const char *junk[] = {"",
                          "   ",
                          "null",
                          "NULL",
                          "undefined",
                          "anonymous",
                          "unknown",
                          "0",
                          "-1",
                          "---",
                          "00000000-0000-0000-0000-000000000000",
                          "n/a"};
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++)
        CHECK_EQ_STR(norm(CXM_IDENT_ANONYMOUS_ID, junk[i], NULL), "<refused>");
    CHECK_EQ_STR(norm(CXM_IDENT_PHONE, "+00 000 000 000", NULL), "<refused>");
    const char *blocked[] = {"test@example.com"};
    cxm_ident_config bl = {.blocklist = blocked, .nblocklist = 1};
    CHECK_EQ_STR(norm(CXM_IDENT_EMAIL, "TEST@example.com", &bl), "<refused>");
    CHECK_EQ_STR(norm(CXM_IDENT_EMAIL, "other@example.com", &bl), "other@example.com");

    char big[300];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK_EQ_STR(norm(CXM_IDENT_CRM_ID, big, NULL), "<refused>");
    big[CXM_IDENT_MAX] = '\0'; /* exactly the limit */
    CHECK_EQ_STR(norm(CXM_IDENT_CRM_ID, big, NULL), big);
    CHECK_EQ_STR(norm(CXM_IDENT_CRM_ID, "bad \xff utf8", NULL), "<refused>");
}

static void test_type_name(void)
{
    CHECK_EQ_STR(cxm_ident_type_name(CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_EMAIL),
                 "IDENTITY_TYPE_EMAIL");
    CHECK_EQ_STR(cxm_ident_type_name((Cxm__V1__IdentityType)99), "?");
}

static Cxm__V1__Identity ident(Cxm__V1__IdentityType type, const char *custom, const char *v)
{
    Cxm__V1__Identity id = CXM__V1__IDENTITY__INIT;
    id.type = type;
    id.custom_type = (char *)custom;
    id.value = (char *)v;
    return id;
}

static void test_check(void)
{
    char err[CXM_SVC_ERR_MAX];
    Cxm__V1__Identity id = ident(CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_EMAIL, "", " A@B.io ");
    CHECK_EQ_INT(cxm_ident_check(NULL, &arena, &id, "events[2].customer.identity", err), 0);
    CHECK_EQ_STR(id.value, "a@b.io");

    id = ident(CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_EMAIL, "", "nope");
    CHECK_EQ_INT(cxm_ident_check(NULL, &arena, &id, "links[1]", err), CXM_EINVAL);
    CHECK(strncmp(err, "links[1].value: \"nope\" is not an email", 38) == 0);
    CHECK_EQ_STR(id.value, "nope"); /* untouched on failure */

    id = ident(CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_UNSPECIFIED, "", "x");
    CHECK_EQ_INT(cxm_ident_check(NULL, &arena, &id, "identity", err), CXM_EINVAL);
    CHECK(strncmp(err, "identity.type: ", 15) == 0);
    CHECK_EQ_INT(cxm_ident_check(NULL, &arena, NULL, "identity", err), CXM_EINVAL);
    CHECK(strncmp(err, "identity.type: ", 15) == 0);
    id = ident((Cxm__V1__IdentityType)42, "", "x");
    CHECK_EQ_INT(cxm_ident_check(NULL, &arena, &id, "identity", err), CXM_EINVAL);

    id = ident(CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CUSTOM, "", "x");
    CHECK_EQ_INT(cxm_ident_check(NULL, &arena, &id, "identity", err), CXM_EINVAL);
    CHECK(strncmp(err, "identity.custom_type: required", 30) == 0);
    id = ident(CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CUSTOM, "Bad Slug", "x");
    CHECK_EQ_INT(cxm_ident_check(NULL, &arena, &id, "identity", err), CXM_EINVAL);
    id = ident(CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_EMAIL, "loyalty", "a@b.io");
    CHECK_EQ_INT(cxm_ident_check(NULL, &arena, &id, "identity", err), CXM_EINVAL);
    id = ident(CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CUSTOM, "loyalty_card", " 77 ");
    CHECK_EQ_INT(cxm_ident_check(NULL, &arena, &id, "identity", err), 0);
    CHECK_EQ_STR(id.value, "77");
    CHECK_EQ_STR(id.custom_type, "loyalty_card");
    /* NULL custom_type on a built-in type becomes "" (a stable cache key). */
    id = ident(CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_DEVICE_ID, NULL, "dev-1");
    CHECK_EQ_INT(cxm_ident_check(NULL, &arena, &id, "identity", err), 0);
    CHECK_EQ_STR(id.custom_type, "");
}

static void test_check_ref(void)
{
    char err[CXM_SVC_ERR_MAX];
    Cxm__V1__CustomerRef ref = CXM__V1__CUSTOMER_REF__INIT;
    CHECK_EQ_INT(cxm_ident_check_ref(NULL, &arena, &ref, "customer", err), CXM_EINVAL);
    CHECK(strncmp(err, "customer: a customer_id or an identity is required", 50) == 0);
    CHECK_EQ_INT(cxm_ident_check_ref(NULL, &arena, NULL, "customer", err), CXM_EINVAL);

    ref.key_case = CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID;
    ref.customer_id = "";
    CHECK_EQ_INT(cxm_ident_check_ref(NULL, &arena, &ref, "customer", err), CXM_EINVAL);
    CHECK(strncmp(err, "customer.customer_id: ", 22) == 0);
    ref.customer_id = "c0123456789abcdef";
    CHECK_EQ_INT(cxm_ident_check_ref(NULL, &arena, &ref, "customer", err), 0);

    Cxm__V1__Identity id = ident(CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_PHONE, "", "010 1234 5678");
    ref.key_case = CXM__V1__CUSTOMER_REF__KEY_IDENTITY;
    ref.identity = &id;
    CHECK_EQ_INT(cxm_ident_check_ref(NULL, &arena, &ref, "customer", err), CXM_EINVAL);
    CHECK(strncmp(err, "customer.identity.value: ", 25) == 0);
    cxm_ident_config kr = {.default_phone_country = "82"};
    CHECK_EQ_INT(cxm_ident_check_ref(&kr, &arena, &ref, "customer", err), 0);
    CHECK_EQ_STR(id.value, "+821012345678");
    ref.identity = NULL;
    CHECK_EQ_INT(cxm_ident_check_ref(NULL, &arena, &ref, "customer", err), CXM_EINVAL);
    CHECK(strncmp(err, "customer.identity.type: ", 24) == 0);
}

int main(void)
{
    cxm_arena_init(&arena, NULL, 0, 0);
    test_normalize();
    test_junk();
    test_type_name();
    test_check();
    test_check_ref();
    cxm_arena_dispose(&arena);
    return check_report();
}
