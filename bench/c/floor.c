/* The C floor: the least a home agent must do per registration, as a plain C UDP server.
 *
 * One socket, one loop: receive a Registration Request, look up the SA by the SPI of its
 * Mobile-Home Authentication Extension, verify the HMAC-MD5 authenticator (RFC 2104 from scratch,
 * key pads built per message), answer a Registration Reply with code 0 (the request's lifetime
 * and Identification) and its own authenticator. No bindings, no replay state, no journal.
 *
 *     floor ADDRESS PORT NODES_FILE
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "nodes.h"

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s ADDRESS PORT NODES_FILE\n", argv[0]);
        return 2;
    }
    md5_init_tables();
    node_table nodes;
    if (nodes_load(&nodes, argv[3])) return 1;
    int sock = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in local = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
    if (sock < 0 || inet_pton(AF_INET, argv[1], &local.sin_addr) != 1 ||
        bind(sock, (struct sockaddr *)&local, sizeof local)) {
        perror("bind");
        return 1;
    }
    fprintf(stderr, "floor: serving %s:%s for %zu nodes\n", argv[1], argv[2], nodes.count);
    uint8_t in[2048], out[REPLY_LEN], digest[AUTH_LEN];
    for (;;) {
        struct sockaddr_in peer;
        socklen_t peerlen = sizeof peer;
        ssize_t n = recvfrom(sock, in, sizeof in, 0, (struct sockaddr *)&peer, &peerlen);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("recvfrom");
            return 1;
        }
        if (n < REQUEST_LEN || in[0] != 1 || in[REQUEST_FIXED] != EXT_MN_HA || in[REQUEST_FIXED + 1] != 20)
            continue;
        const node *sa = nodes_by_spi(&nodes, get32(in + REQUEST_FIXED + 2));
        if (!sa) continue;
        hmac_md5(sa->key, (size_t)sa->keylen, in, REQUEST_FIXED + AUTH_HEADER, digest);
        int ok = auth_equal(digest, in + REQUEST_FIXED + AUTH_HEADER);
        out[0] = 3;
        out[1] = ok ? 0 : 131;
        out[2] = ok ? in[2] : 0; /* lifetime */
        out[3] = ok ? in[3] : 0;
        memcpy(out + 4, in + 4, 8);   /* home address, home agent */
        memcpy(out + 12, in + 16, 8); /* identification */
        out[REPLY_FIXED] = EXT_MN_HA;
        out[REPLY_FIXED + 1] = 20;
        put32(out + REPLY_FIXED + 2, sa->spi);
        hmac_md5(sa->key, (size_t)sa->keylen, out, REPLY_FIXED + AUTH_HEADER, out + REPLY_FIXED + AUTH_HEADER);
        sendto(sock, out, REPLY_LEN, 0, (struct sockaddr *)&peer, peerlen);
    }
}
