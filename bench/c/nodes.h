/* The mobile nodes of a mobile_nodes_file ("home_address spi hex-key", mip.yaml(5)), for
 * the benchmark's C programs: arrays plus two open-addressing maps (home address -> node, SPI -> node). */
#ifndef MIPD_BENCH_NODES_H
#define MIPD_BENCH_NODES_H

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "md5hmac.h"

#define MAX_KEY 64

typedef struct {
    uint32_t home; /* network byte order */
    uint32_t spi;
    uint8_t key[MAX_KEY];
    int keylen;
    hmac_md5_key prepared;
} node;

typedef struct {
    node *nodes;
    size_t count;
    uint32_t *by_home; /* slot -> node index + 1 (0: empty) */
    uint32_t *by_spi;
    size_t slots; /* a power of two */
} node_table;

static inline size_t nodes_hash(uint32_t x, size_t slots) {
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x & (slots - 1);
}

static void nodes_insert(uint32_t *map, size_t slots, uint32_t k, uint32_t index) {
    size_t i = nodes_hash(k, slots);
    while (map[i]) i = (i + 1) & (slots - 1);
    map[i] = index + 1;
}

static inline node *nodes_by_home(const node_table *t, uint32_t home) {
    for (size_t i = nodes_hash(home, t->slots);; i = (i + 1) & (t->slots - 1)) {
        uint32_t v = t->by_home[i];
        if (!v) return NULL;
        if (t->nodes[v - 1].home == home) return &t->nodes[v - 1];
    }
}

static inline node *nodes_by_spi(const node_table *t, uint32_t spi) {
    for (size_t i = nodes_hash(spi, t->slots);; i = (i + 1) & (t->slots - 1)) {
        uint32_t v = t->by_spi[i];
        if (!v) return NULL;
        if (t->nodes[v - 1].spi == spi) return &t->nodes[v - 1];
    }
}

/* Load the file; 0 on success. Lines: home_address spi hex-key [...]; '#' comments. */
static int nodes_load(node_table *t, const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        return -1;
    }
    size_t cap = 1024;
    t->nodes = malloc(cap * sizeof(node));
    t->count = 0;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char address[64], keyhex[2 * MAX_KEY + 2];
        unsigned long spi;
        if (sscanf(line, "%63s %lu %129s", address, &spi, keyhex) != 3) continue;
        if (t->count == cap) {
            cap *= 2;
            t->nodes = realloc(t->nodes, cap * sizeof(node));
        }
        node *n = &t->nodes[t->count];
        struct in_addr in;
        if (inet_pton(AF_INET, address, &in) != 1) {
            fprintf(stderr, "%s: bad address %s\n", path, address);
            fclose(f);
            return -1;
        }
        n->home = in.s_addr;
        n->spi = (uint32_t)spi;
        n->keylen = hex_decode(keyhex, n->key, MAX_KEY);
        if (n->keylen < 0) {
            fprintf(stderr, "%s: bad key for %s\n", path, address);
            fclose(f);
            return -1;
        }
        hmac_md5_prepare(&n->prepared, n->key, (size_t)n->keylen);
        t->count++;
    }
    fclose(f);
    t->slots = 16;
    while (t->slots < 2 * t->count) t->slots *= 2;
    t->by_home = calloc(t->slots, sizeof(uint32_t));
    t->by_spi = calloc(t->slots, sizeof(uint32_t));
    for (size_t i = 0; i < t->count; i++) {
        nodes_insert(t->by_home, t->slots, t->nodes[i].home, (uint32_t)i);
        nodes_insert(t->by_spi, t->slots, t->nodes[i].spi, (uint32_t)i);
    }
    return t->count ? 0 : -1;
}

/* The registration messages' layout (RFC 5944 3.3, 3.4, 3.5.2): a 24-byte request or a 20-byte
 * reply, then the Mobile-Home Authentication Extension: type 32, length 20, SPI, 16-byte HMAC-MD5
 * over everything before the authenticator. */
#define REQUEST_FIXED 24
#define REPLY_FIXED 20
#define AUTH_HEADER 6
#define AUTH_LEN 16
#define REQUEST_LEN (REQUEST_FIXED + AUTH_HEADER + AUTH_LEN) /* 46 */
#define REPLY_LEN (REPLY_FIXED + AUTH_HEADER + AUTH_LEN)     /* 42 */
#define EXT_MN_HA 32

static inline uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }
static inline void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}
static inline uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) << 32 | get32(p + 4); }
static inline void put64(uint8_t *p, uint64_t v) {
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

/* Constant-time comparison of two authenticators. */
static inline int auth_equal(const uint8_t *a, const uint8_t *b) {
    uint8_t diff = 0;
    for (int i = 0; i < AUTH_LEN; i++) diff |= a[i] ^ b[i];
    return diff == 0;
}

#endif
