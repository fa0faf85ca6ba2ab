/* libzmq's side of zmtp-bench's CURVE comparison (Debian's libzmq, built with libsodium).
 *
 * One process, two application threads on tcp://127.0.0.1 (libzmq adds its own I/O thread):
 * a ROUTER bound by the "server" thread and a DEALER in the main thread, with the NULL or the
 * CURVE mechanism (fixed bench keys made with zmq_curve_keypair at start). Scenarios, as in
 * zmtp-bench: COUNT64 one-way 64 B messages acknowledged at the end, COUNT4K one-way 4 KiB
 * messages, then RTT round trips of 64 B (the ROUTER echoes) after 2000 untimed ones.
 *
 *   cc -O2 -o curve_bench interop/libzmq/curve_bench.c -lzmq -lpthread
 *   ./curve_bench curve 1000000 200000 100000
 *
 * Output (one line): "<msg/s 64 B> <msg/s 4 KiB> <median round trip, us>".
 * Loopback only; exits non-zero on any error. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#define WARMUP 2000
#define CHECK(x) do { if ((x) < 0) { fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, zmq_strerror(zmq_errno())); exit(1); } } while (0)

static void *ctx;
static int curve;
static long count64, count4k, rtt;
static char server_public[41], server_secret[41];
static char endpoint[64];
static volatile int bound;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Receive one [identity, body] pair; returns the body size. */
static int recv_pair(void *s, zmq_msg_t *id, zmq_msg_t *body) {
    CHECK(zmq_msg_recv(id, s, 0));
    CHECK(zmq_msg_recv(body, s, 0));
    return (int)zmq_msg_size(body);
}

static void *server(void *arg) {
    (void)arg;
    void *r = zmq_socket(ctx, ZMQ_ROUTER);
    int one = 1, hwm = 0;
    CHECK(zmq_setsockopt(r, ZMQ_RCVHWM, &hwm, sizeof hwm));
    if (curve) {
        CHECK(zmq_setsockopt(r, ZMQ_CURVE_SERVER, &one, sizeof one));
        CHECK(zmq_setsockopt(r, ZMQ_CURVE_SECRETKEY, server_secret, 40));
    }
    CHECK(zmq_bind(r, "tcp://127.0.0.1:*"));
    size_t n = sizeof endpoint;
    CHECK(zmq_getsockopt(r, ZMQ_LAST_ENDPOINT, endpoint, &n));
    __atomic_store_n(&bound, 1, __ATOMIC_RELEASE);
    zmq_msg_t id, body;
    zmq_msg_init(&id);
    zmq_msg_init(&body);
    long counts[2] = {count64, count4k};
    for (int k = 0; k < 2; k++) {
        for (long i = 0; i < counts[k]; i++) recv_pair(r, &id, &body);
        CHECK(zmq_send(r, zmq_msg_data(&id), zmq_msg_size(&id), ZMQ_SNDMORE));
        CHECK(zmq_send(r, "ack", 3, 0));
    }
    for (long i = 0; i < WARMUP + rtt; i++) {
        recv_pair(r, &id, &body);
        CHECK(zmq_send(r, zmq_msg_data(&id), zmq_msg_size(&id), ZMQ_SNDMORE));
        CHECK(zmq_send(r, zmq_msg_data(&body), zmq_msg_size(&body), 0));
    }
    zmq_msg_close(&id);
    zmq_msg_close(&body);
    zmq_close(r);
    return NULL;
}

static double one_way(void *d, size_t size, long count) {
    char *buf = calloc(1, size), ack[8];
    double t0 = now();
    for (long i = 0; i < count; i++) CHECK(zmq_send(d, buf, size, 0));
    CHECK(zmq_recv(d, ack, sizeof ack, 0));
    double dt = now() - t0;
    free(buf);
    return count / dt;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s null|curve COUNT64 COUNT4K RTT\n", argv[0]);
        return 2;
    }
    curve = strcmp(argv[1], "curve") == 0;
    count64 = atol(argv[2]);
    count4k = atol(argv[3]);
    rtt = atol(argv[4]);
    if (curve && !zmq_has("curve")) {
        fprintf(stderr, "this libzmq has no CURVE\n");
        return 1;
    }
    ctx = zmq_ctx_new();
    char client_public[41], client_secret[41];
    if (curve) {
        CHECK(zmq_curve_keypair(server_public, server_secret));
        CHECK(zmq_curve_keypair(client_public, client_secret));
    }
    pthread_t th;
    pthread_create(&th, NULL, server, NULL);
    while (!__atomic_load_n(&bound, __ATOMIC_ACQUIRE)) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    void *d = zmq_socket(ctx, ZMQ_DEALER);
    int hwm = 0;
    CHECK(zmq_setsockopt(d, ZMQ_SNDHWM, &hwm, sizeof hwm));
    CHECK(zmq_setsockopt(d, ZMQ_ROUTING_ID, "\x01" "libzmq-bench", 13));
    if (curve) {
        CHECK(zmq_setsockopt(d, ZMQ_CURVE_SERVERKEY, server_public, 40));
        CHECK(zmq_setsockopt(d, ZMQ_CURVE_PUBLICKEY, client_public, 40));
        CHECK(zmq_setsockopt(d, ZMQ_CURVE_SECRETKEY, client_secret, 40));
    }
    CHECK(zmq_connect(d, endpoint));
    double m64 = one_way(d, 64, count64);
    double m4k = one_way(d, 4096, count4k);
    char buf[64] = {0}, back[64];
    double *rtts = malloc(sizeof(double) * (rtt > 0 ? rtt : 1));
    for (long i = 0; i < WARMUP + rtt; i++) {
        double t0 = now();
        CHECK(zmq_send(d, buf, sizeof buf, 0));
        CHECK(zmq_recv(d, back, sizeof back, 0));
        if (i >= WARMUP) rtts[i - WARMUP] = (now() - t0) * 1e6;
    }
    qsort(rtts, rtt, sizeof(double), cmp_double);
    printf("%.0f %.0f %.2f\n", m64, m4k, rtt > 0 ? rtts[rtt / 2] : 0.0);
    fflush(stdout);
    pthread_join(th, NULL);
    zmq_close(d);
    zmq_ctx_term(ctx);
    free(rtts);
    return 0;
}
