/*
 * tlsload: the dataplane benchmark's native TLS load generator (built at run time by
 * bench/lib/native-loadgen.ts with `cc -O2 … -lssl -lcrypto`; not product code).
 *
 * A Node.js TLS client spends about a millisecond of CPU per new connection, several times
 * what the proxies under test spend; on a two-core machine that generator would take the CPU
 * the proxies need. This one is an epoll loop over non-blocking OpenSSL connections: full
 * TLS 1.3 handshakes (no session cache, no tickets, nothing resumed), SNI set, certificate not
 * verified (client-side work neither proxy sees), one request, the answer read to the close.
 *
 * Usage:
 *   tlsload conn <host> <port> <sni> <local-address|-> <concurrency> <request>
 *     Prints "ready", then keeps <concurrency> connections going. Reads commands on stdin:
 *     "begin" resets the counters, "end" prints one JSON line with the window's figures and exits.
 *   tlsload bulk <host> <port> <sni> <local-address|-> <request>
 *     One connection; prints one JSON line (bytes, elapsed, CPU) when the server closes.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_CONNS 4096
#define MAX_SAMPLES 20000
#define CONN_TIMEOUT_NS (10LL * 1000000000LL)

enum state { IDLE, CONNECTING, HANDSHAKE, WRITING, READING };

struct conn {
  int fd;
  SSL *ssl;
  enum state state;
  int64_t started;
  size_t bytes;
  size_t written;
  int ok_status;
  int want; /* epoll events currently registered */
};

static SSL_CTX *ctx;
static struct sockaddr_in target;
static struct sockaddr_in local;
static int use_local;
static const char *sni;
static const char *request;
static size_t request_len;
static int epfd;
static int running = 1;

/* window counters */
static long long n_ok, n_err;
static double samples[MAX_SAMPLES];
static long long n_seen;
static int64_t window_start;
static double cpu_start;
static char error_sample[160];

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double cpu_us(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rng(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static void reset_window(void) {
  n_ok = n_err = n_seen = 0;
  error_sample[0] = 0;
  window_start = now_ns();
  cpu_start = cpu_us();
}

static void record(double ms) {
  n_seen++;
  if (n_seen <= MAX_SAMPLES) {
    samples[n_seen - 1] = ms;
  } else {
    uint64_t slot = rng() % (uint64_t)n_seen;
    if (slot < MAX_SAMPLES) samples[slot] = ms;
  }
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double quantile(double q) {
  long long n = n_seen < MAX_SAMPLES ? n_seen : MAX_SAMPLES;
  if (n == 0) return -1;
  long long rank = (long long)(q * (double)n + 0.999999) - 1;
  if (rank < 0) rank = 0;
  if (rank >= n) rank = n - 1;
  return samples[rank];
}

static void print_window(void) {
  long long n = n_seen < MAX_SAMPLES ? n_seen : MAX_SAMPLES;
  qsort(samples, (size_t)n, sizeof(double), cmp_double);
  printf("{\"connections\":%lld,\"errors\":%lld,\"elapsedMs\":%.3f,\"cpuMicros\":%.0f,\"p50Ms\":%.3f,\"p99Ms\":%.3f,\"error\":\"%s\"}\n",
         n_ok, n_err, (double)(now_ns() - window_start) / 1e6, cpu_us() - cpu_start, quantile(0.5), quantile(0.99),
         error_sample);
  fflush(stdout);
}

static void note_error(const char *what) {
  if (error_sample[0] != 0) return;
  unsigned long e = ERR_peek_last_error();
  char buf[120] = "";
  if (e != 0) ERR_error_string_n(e, buf, sizeof buf);
  snprintf(error_sample, sizeof error_sample, "%s%s%s%s%s", what, errno ? ": " : "", errno ? strerror(errno) : "",
           buf[0] ? " " : "", buf);
  /* JSON-safe: the message is printed inside quotes */
  for (char *p = error_sample; *p; p++)
    if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) *p = ' ';
}

static void set_events(struct conn *c, int events) {
  if (c->want == events) return;
  struct epoll_event ev = {.events = (uint32_t)events, .data.ptr = c};
  epoll_ctl(epfd, c->want == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, c->fd, &ev);
  c->want = events;
}

static void finish(struct conn *c, int ok, const char *what) {
  if (c->ssl) SSL_free(c->ssl);
  if (c->fd >= 0) close(c->fd); /* closing removes it from the epoll set */
  if (ok) {
    n_ok++;
    record((double)(now_ns() - c->started) / 1e6);
  } else {
    n_err++;
    note_error(what);
  }
  ERR_clear_error();
  c->ssl = NULL;
  c->fd = -1;
  c->want = 0;
  c->state = IDLE;
}

static void start(struct conn *c) {
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  c->ssl = NULL;
  c->bytes = c->written = 0;
  c->ok_status = 0;
  c->want = 0;
  c->started = now_ns();
  if (c->fd < 0) {
    finish(c, 0, "socket");
    return;
  }
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (use_local) {
    /* Source address without reserving a port at bind time: connect() picks it per 4-tuple. */
    setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (bind(c->fd, (struct sockaddr *)&local, sizeof local) != 0) {
      finish(c, 0, "bind");
      return;
    }
  }
  if (connect(c->fd, (struct sockaddr *)&target, sizeof target) != 0 && errno != EINPROGRESS) {
    finish(c, 0, "connect");
    return;
  }
  c->state = CONNECTING;
  set_events(c, EPOLLOUT);
}

/* Drives one connection as far as it can go without blocking. */
static void step(struct conn *c) {
  for (;;) {
    switch (c->state) {
    case IDLE:
      return;
    case CONNECTING: {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        errno = err;
        finish(c, 0, "connect");
        return;
      }
      c->ssl = SSL_new(ctx);
      SSL_set_fd(c->ssl, c->fd);
      SSL_set_tlsext_host_name(c->ssl, sni);
      SSL_set_connect_state(c->ssl);
      c->state = HANDSHAKE;
      continue;
    }
    case HANDSHAKE: {
      int r = SSL_do_handshake(c->ssl);
      if (r == 1) {
        c->state = WRITING;
        continue;
      }
      int e = SSL_get_error(c->ssl, r);
      if (e == SSL_ERROR_WANT_READ) set_events(c, EPOLLIN);
      else if (e == SSL_ERROR_WANT_WRITE) set_events(c, EPOLLOUT);
      else finish(c, 0, "handshake");
      return;
    }
    case WRITING: {
      int r = SSL_write(c->ssl, request + c->written, (int)(request_len - c->written));
      if (r > 0) {
        c->written += (size_t)r;
        if (c->written == request_len) c->state = READING;
        continue;
      }
      int e = SSL_get_error(c->ssl, r);
      if (e == SSL_ERROR_WANT_READ) set_events(c, EPOLLIN);
      else if (e == SSL_ERROR_WANT_WRITE) set_events(c, EPOLLOUT);
      else finish(c, 0, "write");
      return;
    }
    case READING: {
      char buf[65536];
      int r = SSL_read(c->ssl, buf, sizeof buf);
      if (r > 0) {
        if (c->bytes == 0 && r >= 12 && memcmp(buf, "HTTP/1.1 200", 12) == 0) c->ok_status = 1;
        c->bytes += (size_t)r;
        continue;
      }
      int e = SSL_get_error(c->ssl, r);
      if (e == SSL_ERROR_WANT_READ) {
        set_events(c, EPOLLIN);
        return;
      }
      if (e == SSL_ERROR_WANT_WRITE) {
        set_events(c, EPOLLOUT);
        return;
      }
      /* close_notify, or a plain EOF after the answer (the server closes the connection) */
      int clean = e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0);
      if (clean && c->ok_status) finish(c, 1, "");
      else finish(c, 0, c->ok_status ? "read" : "unexpected answer");
      return;
    }
    }
  }
}

static int parse_addr(const char *host, int port, struct sockaddr_in *out) {
  memset(out, 0, sizeof *out);
  out->sin_family = AF_INET;
  out->sin_port = htons((uint16_t)port);
  return inet_pton(AF_INET, host, &out->sin_addr) == 1 ? 0 : -1;
}

static int setup(char **argv) {
  if (parse_addr(argv[2], atoi(argv[3]), &target) != 0) return -1;
  sni = argv[4];
  use_local = strcmp(argv[5], "-") != 0;
  if (use_local && parse_addr(argv[5], 0, &local) != 0) return -1;
  ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == NULL) return -1;
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  epfd = epoll_create1(EPOLL_CLOEXEC);
  return epfd < 0 ? -1 : 0;
}

static int handle_stdin(void) {
  char line[64];
  ssize_t n = read(STDIN_FILENO, line, sizeof line - 1);
  if (n <= 0) return -1; /* the benchmark went away */
  line[n] = 0;
  if (strstr(line, "begin")) reset_window();
  if (strstr(line, "end")) {
    print_window();
    return -1;
  }
  return 0;
}

static void expire(struct conn *conns, int count) {
  int64_t now = now_ns();
  for (int i = 0; i < count; i++) {
    if (conns[i].state != IDLE && now - conns[i].started > CONN_TIMEOUT_NS) {
      errno = 0;
      finish(&conns[i], 0, "timeout");
    }
  }
}

static int run_connections(int concurrency) {
  static struct conn conns[MAX_CONNS];
  struct epoll_event stdin_ev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(epfd, EPOLL_CTL_ADD, STDIN_FILENO, &stdin_ev);
  reset_window();
  for (int i = 0; i < concurrency; i++) {
    conns[i].fd = -1;
    conns[i].state = IDLE;
    start(&conns[i]);
  }
  printf("ready\n");
  fflush(stdout);
  struct epoll_event events[256];
  int64_t last_expire = now_ns();
  while (running) {
    int n = epoll_wait(epfd, events, 256, 100);
    for (int i = 0; i < n; i++) {
      struct conn *c = events[i].data.ptr;
      if (c == NULL) {
        if (handle_stdin() != 0) running = 0;
        continue;
      }
      errno = 0;
      step(c);
    }
    if (now_ns() - last_expire > 100000000LL) {
      expire(conns, concurrency);
      last_expire = now_ns();
    }
    for (int i = 0; running && i < concurrency; i++) {
      if (conns[i].state == IDLE) {
        start(&conns[i]);
        errno = 0;
        if (conns[i].state == CONNECTING) step(&conns[i]);
      }
    }
  }
  return 0;
}

static int run_bulk(void) {
  struct conn c = {.fd = -1, .state = IDLE};
  reset_window();
  start(&c);
  struct epoll_event events[4];
  /* Ends when the server closes, or after CONN_TIMEOUT_NS without a byte. */
  size_t last_bytes = 0;
  int64_t last_progress = now_ns();
  while (c.state != IDLE) {
    int n = epoll_wait(epfd, events, 4, 100);
    for (int i = 0; i < n && c.state != IDLE; i++) {
      errno = 0;
      step(&c);
    }
    if (c.bytes != last_bytes) {
      last_bytes = c.bytes;
      last_progress = now_ns();
    }
    if (c.state != IDLE && now_ns() - last_progress > CONN_TIMEOUT_NS) finish(&c, 0, "timeout");
  }
  printf("{\"bytes\":%zu,\"elapsedMs\":%.3f,\"cpuMicros\":%.0f,\"ok\":%s,\"error\":\"%s\"}\n", last_bytes,
         (double)(now_ns() - window_start) / 1e6, cpu_us() - cpu_start, n_ok == 1 ? "true" : "false", error_sample);
  fflush(stdout);
  return n_ok == 1 ? 0 : 1;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc == 8 && strcmp(argv[1], "conn") == 0) {
    int concurrency = atoi(argv[6]);
    request = argv[7];
    request_len = strlen(request);
    if (concurrency < 1 || concurrency > MAX_CONNS || setup(argv) != 0) {
      fprintf(stderr, "tlsload: bad arguments\n");
      return 2;
    }
    return run_connections(concurrency);
  }
  if (argc == 7 && strcmp(argv[1], "bulk") == 0) {
    request = argv[6];
    request_len = strlen(request);
    if (setup(argv) != 0) {
      fprintf(stderr, "tlsload: bad arguments\n");
      return 2;
    }
    return run_bulk();
  }
  fprintf(stderr, "usage: tlsload conn <host> <port> <sni> <local|-> <concurrency> <request>\n"
                  "       tlsload bulk <host> <port> <sni> <local|-> <request>\n");
  return 2;
}
