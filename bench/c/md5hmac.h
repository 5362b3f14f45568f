/* MD5 (RFC 1321) and HMAC-MD5 (RFC 2104), written for mipd's benchmark programs.
 *
 * Header-only: each program includes it once. The sine-derived constants of RFC 1321 section 3.4
 * ("T[i] ... the integer part of 4294967296 times abs(sin(i))") are computed at start-up by
 * md5_init_tables(); the harness checks every build against Python's hmac module before use. */
#ifndef MIPD_BENCH_MD5HMAC_H
#define MIPD_BENCH_MD5HMAC_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static uint32_t md5_t[64];
static const uint8_t md5_shift[64] = {
    7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
    5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20,
    4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
    6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
};

static void md5_init_tables(void) {
    for (int i = 0; i < 64; i++)
        md5_t[i] = (uint32_t)(fabs(sin((double)(i + 1))) * 4294967296.0);
}

typedef struct {
    uint32_t h[4];
    uint64_t length; /* bytes hashed so far */
    uint8_t buffer[64];
    size_t used; /* bytes waiting in buffer */
} md5_ctx;

static inline uint32_t md5_rotl(uint32_t x, unsigned n) { return (x << n) | (x >> (32 - n)); }

static void md5_block(uint32_t h[4], const uint8_t *block) {
    uint32_t m[16];
    for (int i = 0; i < 16; i++)
        m[i] = (uint32_t)block[4 * i] | (uint32_t)block[4 * i + 1] << 8 | (uint32_t)block[4 * i + 2] << 16 |
               (uint32_t)block[4 * i + 3] << 24;
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
    for (int i = 0; i < 64; i++) {
        uint32_t f;
        int g;
        if (i < 16) {
            f = (b & c) | (~b & d);
            g = i;
        } else if (i < 32) {
            f = (d & b) | (~d & c);
            g = (5 * i + 1) & 15;
        } else if (i < 48) {
            f = b ^ c ^ d;
            g = (3 * i + 5) & 15;
        } else {
            f = c ^ (b | ~d);
            g = (7 * i) & 15;
        }
        uint32_t next = b + md5_rotl(a + f + md5_t[i] + m[g], md5_shift[i]);
        a = d;
        d = c;
        c = b;
        b = next;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
}

static void md5_start(md5_ctx *ctx) {
    ctx->h[0] = 0x67452301u;
    ctx->h[1] = 0xefcdab89u;
    ctx->h[2] = 0x98badcfeu;
    ctx->h[3] = 0x10325476u;
    ctx->length = 0;
    ctx->used = 0;
}

static void md5_update(md5_ctx *ctx, const uint8_t *data, size_t len) {
    ctx->length += len;
    if (ctx->used) {
        size_t take = 64 - ctx->used < len ? 64 - ctx->used : len;
        memcpy(ctx->buffer + ctx->used, data, take);
        ctx->used += take;
        data += take;
        len -= take;
        if (ctx->used < 64)
            return;
        md5_block(ctx->h, ctx->buffer);
        ctx->used = 0;
    }
    while (len >= 64) {
        md5_block(ctx->h, data);
        data += 64;
        len -= 64;
    }
    memcpy(ctx->buffer, data, len);
    ctx->used = len;
}

static void md5_finish(md5_ctx *ctx, uint8_t out[16]) {
    uint64_t bits = ctx->length * 8;
    uint8_t pad[72] = {0x80};
    size_t padlen = ctx->used < 56 ? 56 - ctx->used : 120 - ctx->used;
    for (int i = 0; i < 8; i++)
        pad[padlen + i] = (uint8_t)(bits >> (8 * i));
    md5_update(ctx, pad, padlen + 8);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            out[4 * i + j] = (uint8_t)(ctx->h[i] >> (8 * j));
}

/* HMAC-MD5 with the key's inner and outer blocks hashed once (RFC 2104 section 4's
 * "precomputed" variant): hmac_md5_keyed() then costs two MD5 blocks for a short message. */
typedef struct {
    md5_ctx inner, outer;
} hmac_md5_key;

static void hmac_md5_prepare(hmac_md5_key *k, const uint8_t *key, size_t keylen) {
    uint8_t block[64] = {0}, ipad[64], opad[64];
    if (keylen > 64) {
        md5_ctx c;
        md5_start(&c);
        md5_update(&c, key, keylen);
        md5_finish(&c, block);
    } else {
        memcpy(block, key, keylen);
    }
    for (int i = 0; i < 64; i++) {
        ipad[i] = block[i] ^ 0x36;
        opad[i] = block[i] ^ 0x5c;
    }
    md5_start(&k->inner);
    md5_update(&k->inner, ipad, 64);
    md5_start(&k->outer);
    md5_update(&k->outer, opad, 64);
}

static void hmac_md5_keyed(const hmac_md5_key *k, const uint8_t *msg, size_t len, uint8_t out[16]) {
    md5_ctx c = k->inner;
    uint8_t inner[16];
    md5_update(&c, msg, len);
    md5_finish(&c, inner);
    c = k->outer;
    md5_update(&c, inner, 16);
    md5_finish(&c, out);
}

/* Plain HMAC-MD5 (RFC 2104 section 2), key pads built for every message. */
static void hmac_md5(const uint8_t *key, size_t keylen, const uint8_t *msg, size_t len, uint8_t out[16]) {
    hmac_md5_key k;
    hmac_md5_prepare(&k, key, keylen);
    hmac_md5_keyed(&k, msg, len, out);
}

static int hex_nibble(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decode hex into out (at most cap bytes); the byte count, or -1. */
static int hex_decode(const char *hex, uint8_t *out, size_t cap) {
    size_t n = strlen(hex);
    if (n % 2 || n / 2 > cap) return -1;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hex_nibble(hex[2 * i]), lo = hex_nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return (int)(n / 2);
}

#endif
