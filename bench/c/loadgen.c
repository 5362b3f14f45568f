/* The registration load generator: authenticated Registration Requests for many mobile nodes.
 *
 * Every request carries a fresh NTP timestamp Identification (RFC 5944 5.7.1; strictly
 * increasing per node) and a Mobile-Home Authentication Extension with HMAC-MD5 over the
 * request and the extension's type, length and SPI (3.5.1). Nodes are taken round robin from
 * a mobile_nodes_file. A reply counts as accepted when it answers the node's outstanding request
 * (same home address and Identification), carries code 0 or 1, and its own authenticator verifies.
 *
 *     loadgen hmac KEY_HEX MESSAGE_HEX          print HMAC-MD5 (the harness checks the build)
 *     loadgen closed OPTIONS                    closed loop: keep --window requests outstanding
 *     loadgen open OPTIONS                      open loop: send at --rate per second on a fixed schedule
 *
 * OPTIONS: --server IP --source IP --home-agent IP --nodes FILE --seconds S [--window W]
 *          [--rate R] [--lifetime L] [--until-accepted N] [--port P]
 * Prints one JSON object. Latency is from the request's scheduled send time (open loop: so that a
 * backlog is not hidden, no coordinated omission) to the reply's arrival.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "nodes.h"

#define NTP_UNIX_OFFSET 2208988800ull
/* Closed loop: a window with no reply at all for 1 s is taken as lost and refilled. Not less: a
 * server that answers a whole batch at once after processing it (mipd: one commit per loop turn)
 * may be silent for a few hundred ms under load, and refilling early would flood it. */
#define LOST_AFTER_NS 1000000000ll

typedef struct {
    uint64_t ident;     /* of the outstanding request, 0 if none */
    uint64_t last;      /* last Identification sent */
    int64_t scheduled;  /* ns, CLOCK_MONOTONIC */
} pending;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static uint64_t ntp_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t fraction = ((uint64_t)ts.tv_nsec << 32) / 1000000000ull;
    return ((uint64_t)ts.tv_sec + NTP_UNIX_OFFSET) << 32 | fraction;
}

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(double *sorted, size_t n, double p) {
    if (!n) return -1;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return sorted[i < n ? i : n - 1];
}

typedef struct {
    int sock;
    node_table nodes;
    pending *pend;
    size_t next_node;
    uint32_t home_agent, care_of; /* network order */
    uint16_t lifetime;
    /* counts */
    uint64_t sent, accepted, rejected, bad_auth, unmatched, send_errors, resets;
    int first_code;
    double *latency;
    size_t latencies, latency_cap;
} gen;

static int send_next(gen *g, int64_t scheduled) {
    size_t index = g->next_node;
    g->next_node = (g->next_node + 1) % g->nodes.count;
    node *n = &g->nodes.nodes[index];
    pending *p = &g->pend[index];
    uint64_t ident = ntp_now();
    if (ident <= p->last) ident = p->last + 1;
    uint8_t msg[REQUEST_LEN];
    msg[0] = 1;
    msg[1] = 0x20; /* D: a co-located care-of address, the source of this datagram */
    msg[2] = (uint8_t)(g->lifetime >> 8);
    msg[3] = (uint8_t)g->lifetime;
    memcpy(msg + 4, &n->home, 4);
    memcpy(msg + 8, &g->home_agent, 4);
    memcpy(msg + 12, &g->care_of, 4);
    put64(msg + 16, ident);
    msg[REQUEST_FIXED] = EXT_MN_HA;
    msg[REQUEST_FIXED + 1] = 20;
    put32(msg + REQUEST_FIXED + 2, n->spi);
    hmac_md5_keyed(&n->prepared, msg, REQUEST_FIXED + AUTH_HEADER, msg + REQUEST_FIXED + AUTH_HEADER);
    if (send(g->sock, msg, sizeof msg, 0) != (ssize_t)sizeof msg) {
        g->send_errors++;
        return 0;
    }
    p->last = ident;
    p->ident = ident;
    p->scheduled = scheduled;
    g->sent++;
    return 1;
}

/* Read every reply waiting; the number that answered an outstanding request. */
static int drain(gen *g) {
    int answered = 0;
    uint8_t buf[2048], digest[AUTH_LEN];
    for (;;) {
        ssize_t n = recv(g->sock, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            return answered; /* EAGAIN, or an ICMP error reported on the socket */
        }
        int64_t arrived = now_ns();
        uint32_t home;
        memcpy(&home, buf + 4, 4);
        node *nd = n >= REPLY_FIXED ? nodes_by_home(&g->nodes, home) : NULL;
        if (!nd || buf[0] != 3) {
            g->unmatched++;
            continue;
        }
        pending *p = &g->pend[nd - g->nodes.nodes];
        if (!p->ident || get64(buf + 12) != p->ident) {
            g->unmatched++;
            continue;
        }
        p->ident = 0;
        answered++;
        int code = buf[1];
        if (n < REPLY_LEN || buf[REPLY_FIXED] != EXT_MN_HA || get32(buf + REPLY_FIXED + 2) != nd->spi) {
            g->bad_auth++;
            continue;
        }
        hmac_md5_keyed(&nd->prepared, buf, REPLY_FIXED + AUTH_HEADER, digest);
        if (!auth_equal(digest, buf + REPLY_FIXED + AUTH_HEADER)) {
            g->bad_auth++;
            continue;
        }
        if (code > 1) {
            g->rejected++;
            if (g->first_code < 0) g->first_code = code;
            continue;
        }
        g->accepted++;
        if (g->latencies < g->latency_cap) g->latency[g->latencies++] = (double)(arrived - p->scheduled) / 1e6;
    }
}

static void wait_readable(int sock, int64_t timeout_ns) {
    struct pollfd pfd = {.fd = sock, .events = POLLIN};
    if (timeout_ns < 0) timeout_ns = 0;
    struct timespec ts = {.tv_sec = timeout_ns / 1000000000ll, .tv_nsec = timeout_ns % 1000000000ll};
    ppoll(&pfd, 1, &ts, NULL);
}

static const char *option(int argc, char **argv, const char *name, const char *fallback) {
    for (int i = 2; i + 1 < argc; i += 2)
        if (!strcmp(argv[i], name)) return argv[i + 1];
    if (!fallback) {
        fprintf(stderr, "loadgen: %s is required\n", name);
        exit(2);
    }
    return fallback;
}

static uint32_t address(const char *text) {
    struct in_addr in;
    if (inet_pton(AF_INET, text, &in) != 1) {
        fprintf(stderr, "loadgen: bad address %s\n", text);
        exit(2);
    }
    return in.s_addr;
}

int main(int argc, char **argv) {
    md5_init_tables();
    if (argc == 4 && !strcmp(argv[1], "hmac")) {
        uint8_t key[256], msg[4096], out[16];
        int keylen = hex_decode(argv[2], key, sizeof key), msglen = hex_decode(argv[3], msg, sizeof msg);
        if (keylen < 0 || msglen < 0) return 2;
        hmac_md5(key, (size_t)keylen, msg, (size_t)msglen, out);
        for (int i = 0; i < 16; i++) printf("%02x", out[i]);
        printf("\n");
        return 0;
    }
    if (argc < 2 || (strcmp(argv[1], "closed") && strcmp(argv[1], "open"))) {
        fprintf(stderr, "usage: %s hmac KEY MSG | closed|open OPTIONS\n", argv[0]);
        return 2;
    }
    int open_loop = !strcmp(argv[1], "open");
    gen g = {.first_code = -1};
    if (nodes_load(&g.nodes, option(argc, argv, "--nodes", NULL))) return 1;
    g.pend = calloc(g.nodes.count, sizeof(pending));
    g.home_agent = address(option(argc, argv, "--home-agent", NULL));
    g.care_of = address(option(argc, argv, "--source", NULL));
    g.lifetime = (uint16_t)atoi(option(argc, argv, "--lifetime", "600"));
    double seconds = atof(option(argc, argv, "--seconds", NULL));
    double rate = atof(option(argc, argv, "--rate", "0"));
    size_t window = (size_t)atol(option(argc, argv, "--window", "64"));
    uint64_t until = (uint64_t)atoll(option(argc, argv, "--until-accepted", "0"));
    if (window > g.nodes.count) window = g.nodes.count; /* one outstanding request per node */
    if (open_loop && rate <= 0) {
        fprintf(stderr, "loadgen: open loop needs --rate\n");
        return 2;
    }
    g.latency_cap = (size_t)((open_loop ? rate : 500000.0) * (seconds + 1)) + 1024;
    g.latency = malloc(g.latency_cap * sizeof(double));
    prctl(PR_SET_TIMERSLACK, 1ul, 0, 0, 0);

    g.sock = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in local = {.sin_family = AF_INET, .sin_addr.s_addr = g.care_of};
    struct sockaddr_in server = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)atoi(option(argc, argv, "--port", "434"))),
                                 .sin_addr.s_addr = address(option(argc, argv, "--server", NULL))};
    /* 4 MiB buffers, past rmem_max/wmem_max as root (FORCE), so that replies are never lost on the
     * generator's side; the server under test keeps the system's defaults, as mipd does. */
    int buffer = 4 << 20;
    if (setsockopt(g.sock, SOL_SOCKET, SO_RCVBUFFORCE, &buffer, sizeof buffer))
        setsockopt(g.sock, SOL_SOCKET, SO_RCVBUF, &buffer, sizeof buffer);
    if (setsockopt(g.sock, SOL_SOCKET, SO_SNDBUFFORCE, &buffer, sizeof buffer))
        setsockopt(g.sock, SOL_SOCKET, SO_SNDBUF, &buffer, sizeof buffer);
    if (bind(g.sock, (struct sockaddr *)&local, sizeof local) ||
        connect(g.sock, (struct sockaddr *)&server, sizeof server)) {
        perror("loadgen: socket");
        return 1;
    }

    int64_t start = now_ns(), end = start + (int64_t)(seconds * 1e9), now = start;
    size_t outstanding = 0;
    if (open_loop) {
        double interval = 1e9 / rate, next = (double)start;
        while (now < end) {
            while (next <= (double)now && next < (double)end) {
                send_next(&g, (int64_t)next);
                next += interval;
            }
            drain(&g);
            now = now_ns();
            if (next > (double)now) wait_readable(g.sock, (int64_t)next - now);
            now = now_ns();
        }
        int64_t stop = now + 500000000ll; /* answers still on their way: half a second */
        while (now < stop) {
            uint64_t done = g.accepted + g.rejected + g.bad_auth;
            if (done >= g.sent) break;
            wait_readable(g.sock, 10000000ll);
            drain(&g);
            now = now_ns();
        }
    } else {
        int64_t progress = start;
        while (now < end && (!until || g.accepted < until)) {
            while (outstanding < window) outstanding += (size_t)send_next(&g, now_ns());
            wait_readable(g.sock, 1000000ll);
            int answered = drain(&g);
            now = now_ns();
            if (answered) {
                outstanding -= (size_t)answered < outstanding ? (size_t)answered : outstanding;
                progress = now;
            } else if (now - progress > LOST_AFTER_NS) {
                outstanding = 0; /* those requests or their replies were lost */
                g.resets++;
                progress = now;
            }
        }
    }
    double elapsed = (double)((open_loop ? (end < now ? end : now) : now) - start) / 1e9;
    qsort(g.latency, g.latencies, sizeof(double), compare_double);
    uint64_t answered = g.accepted + g.rejected + g.bad_auth;
    printf("{\"mode\": \"%s\", \"nodes\": %zu, \"seconds\": %.4f, \"target_rate\": %.1f, \"window\": %zu, "
           "\"sent\": %lu, \"accepted\": %lu, \"rejected\": %lu, \"first_rejection_code\": %d, "
           "\"bad_auth\": %lu, \"unmatched\": %lu, \"lost\": %lu, \"send_errors\": %lu, \"window_resets\": %lu, "
           "\"in_flight_at_end\": %zu, \"rate\": %.1f, \"p50_ms\": %.4f, \"p90_ms\": %.4f, \"p99_ms\": %.4f, \"max_ms\": %.4f}\n",
           argv[1], g.nodes.count, elapsed, open_loop ? rate : 0.0, open_loop ? 0 : window,
           (unsigned long)g.sent, (unsigned long)g.accepted, (unsigned long)g.rejected, g.first_code,
           (unsigned long)g.bad_auth, (unsigned long)g.unmatched,
           (unsigned long)(g.sent > answered ? g.sent - answered : 0), (unsigned long)g.send_errors,
           (unsigned long)g.resets, outstanding, elapsed > 0 ? (double)g.accepted / elapsed : 0.0,
           percentile(g.latency, g.latencies, 0.50), percentile(g.latency, g.latencies, 0.90),
           percentile(g.latency, g.latencies, 0.99),
           g.latencies ? g.latency[g.latencies - 1] : -1.0);
    return 0;
}
