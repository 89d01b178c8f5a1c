/*
 * jwt_mint.h - make JWTs and keys for the tests of auth.h, with OpenSSL:
 * what an identity provider would hand out, made at test time (no key is
 * committed). Shared by the unit test, the integration test and the
 * cxm-test-jwt tool the authentication benchmark uses.
 */
#ifndef CXM_TEST_JWT_MINT_H
#define CXM_TEST_JWT_MINT_H

#include <stddef.h>
#include <openssl/evp.h>

/* A fresh RSA 2048 or EC P-256 key pair; EVP_PKEY_free it. */
EVP_PKEY *jwt_mint_keypair(const char *alg /* "RS256" or "ES256" */);

/* Write key's public half (PEM) or private half (PKCS#8 PEM) to path.
 * Returns 0 or -1. */
int jwt_mint_write_public(EVP_PKEY *key, const char *path);
int jwt_mint_write_private(EVP_PKEY *key, const char *path);
EVP_PKEY *jwt_mint_read_private(const char *path);

/* header.payload.signature of the two JSON texts, signed per alg ("HS256"
 * with secret, "RS256"/"ES256" with key, "none": empty signature). The
 * header is taken as is, so tests can lie in it. Returns a malloc'ed
 * string (free it), NULL on failure. */
char *jwt_mint(const char *alg, const char *header_json, const char *payload_json,
               const void *secret, size_t secret_len, EVP_PKEY *key);

/* Base64url without padding of n bytes into a malloc'ed string. */
char *jwt_mint_b64url(const void *data, size_t n);

#endif
