/*
 * fanout: the load generator of the fan-out workload. One publisher, N subscribers on one topic.
 *
 * It opens N subscriber connections (to --sub-path, /fanout?role=sub by default, spread
 * round-robin over the --ports given, so that two instances can share them) and one publisher
 * connection (to --pub-path, /fanout?role=pub, on the first port: one path for both, since
 * crossws groups its peers by path). Every connection waits for the server's "ready" text, which
 * the server sends once
 * the subscription counts. Then the publisher sends numbered binary messages, each carrying the
 * time it was sent, keeping --window messages in flight: a message is in flight until every
 * subscriber has it. The server fans each one out to all N subscribers.
 *
 * Over the measured window it reports deliveries per second (messages times subscribers), the
 * delivery latency (from the publisher's send to each subscriber's receive, one clock) at p50,
 * p99 and p99.9, and the CPU time of itself, of the servers (--pids) and of the machine. It also
 * checks the topic guarantees on the way: each subscriber must get the messages in order, each
 * once (out_of_order, duplicates and missing are counted), and it fails when the window stalls.
 *
 * Masking and the handshake follow RFC 6455 as in loadgen.c; this file stays separate so that
 * each workload's client remains small.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum state { ST_FREE, ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_READY, ST_CLOSING };

static int g_ports[8];
static int g_nports;
static const char *g_sub_path = "/fanout?role=sub";
static const char *g_pub_path = "/fanout?role=pub";
static int g_subs = 1000;
static int g_window = 8;
static size_t g_size = 64;
static int g_warmup_ms = 500;
static int g_duration_ms = 2000;
static int g_concurrency = 100;
static int g_pids[16];
static int g_npids;

static uint64_t g_now;

static uint64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* --- latency histogram: 1 us buckets below 100 ms, 1 ms buckets up to 60 s --- */

#define HIST_US 100000
#define HIST_MS 60000
static uint32_t h_us[HIST_US], h_ms[HIST_MS];
static uint64_t h_n;

static void hist_add(uint64_t v) {
  if (v < HIST_US)
    h_us[v]++;
  else
    h_ms[v / 1000 < HIST_MS ? v / 1000 : HIST_MS - 1]++;
  h_n++;
}

static double hist_pct(double p) {
  if (h_n == 0) return -1;
  uint64_t rank = (uint64_t)(p * (double)h_n), seen = 0;
  if (rank >= h_n) rank = h_n - 1;
  for (int i = 0; i < HIST_US; i++)
    if ((seen += h_us[i]) > rank) return i;
  for (int i = 0; i < HIST_MS; i++)
    if ((seen += h_ms[i]) > rank) return (double)i * 1000.0;
  return -1;
}

/* --- connections --- */

typedef struct {
  int fd, port, publisher;
  enum state st;
  int want_out;
  uint8_t *wbuf;
  size_t wlen, woff, wcap;
  char hbuf[2048];
  size_t hlen;
  uint8_t fh[14];
  int fh_len, fh_need, opcode, fin;
  uint64_t left;
  uint8_t head[16]; /* the first bytes of the current data message: sequence and send time */
  int head_len, msg_text;
  int64_t last_seq;
} conn_t;

static conn_t *g_c;
static int g_nconns;
static int g_epfd;
static uint8_t g_mask[4];

/* The in-flight messages: how many subscribers got each, by sequence modulo RING. */
#define RING 65536
static uint32_t g_got[RING];
static uint64_t g_next_seq, g_done_seq; /* all below g_done_seq reached every subscriber */
static uint64_t g_deliveries, g_completed, g_out_of_order, g_missing, g_errors, g_ready;
static int g_measuring, g_publishing, g_stopping;
static uint64_t g_last_progress;

static void die(const char *what) {
  printf("{\"error\":\"%s: %s\"}\n", what, strerror(errno));
  fflush(stdout);
  exit(1);
}

static void want_out(conn_t *c, int on) {
  if (c->want_out == on) return;
  struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
  epoll_ctl(g_epfd, EPOLL_CTL_MOD, c->fd, &ev);
  c->want_out = on;
}

static void wappend(conn_t *c, const void *p, size_t n) {
  if (c->wlen + n > c->wcap) {
    size_t cap = c->wcap ? c->wcap : 4096;
    while (cap < c->wlen + n) cap *= 2;
    if (!(c->wbuf = realloc(c->wbuf, cap))) die("realloc");
    c->wcap = cap;
  }
  memcpy(c->wbuf + c->wlen, p, n);
  c->wlen += n;
}

static void append_frame(conn_t *c, int opcode, const uint8_t *payload, size_t len) {
  uint8_t h[14 + 65536];
  size_t hl = 0;
  h[hl++] = 0x80 | (uint8_t)opcode;
  if (len < 126) {
    h[hl++] = 0x80 | (uint8_t)len;
  } else {
    h[hl++] = 0x80 | 126;
    h[hl++] = (uint8_t)(len >> 8);
    h[hl++] = (uint8_t)len;
  }
  memcpy(h + hl, g_mask, 4);
  hl += 4;
  for (size_t i = 0; i < len; i++) h[hl + i] = payload[i] ^ g_mask[i & 3];
  wappend(c, h, hl + len);
}

static int flush(conn_t *c) {
  while (c->woff < c->wlen) {
    ssize_t n = write(c->fd, c->wbuf + c->woff, c->wlen - c->woff);
    if (n < 0) {
      if (errno == EAGAIN) break;
      if (errno == EINTR) continue;
      return 0;
    }
    c->woff += (size_t)n;
  }
  if (c->woff == c->wlen) c->woff = c->wlen = 0;
  want_out(c, c->woff < c->wlen);
  return 1;
}

static conn_t *publisher(void) { return &g_c[g_subs]; }

/* Keeps --window messages in flight. */
static void publish_more(void) {
  if (!g_publishing || g_stopping) return;
  conn_t *p = publisher();
  int sent = 0;
  while (g_next_seq - g_done_seq < (uint64_t)g_window) {
    uint8_t payload[65536];
    memset(payload, 'x', g_size);
    uint64_t seq = g_next_seq++, t = g_now;
    memcpy(payload, &seq, 8);
    memcpy(payload + 8, &t, 8);
    g_got[seq % RING] = 0;
    append_frame(p, 2, payload, g_size);
    sent = 1;
  }
  if (sent && !flush(p)) g_errors++;
}

static void on_data(conn_t *c) {
  if (c->msg_text) { /* the server's "ready": the subscription counts */
    if (c->st == ST_OPEN) {
      c->st = ST_READY;
      g_ready++;
    }
    return;
  }
  if (c->publisher || c->head_len < 16) return;
  uint64_t seq, t;
  memcpy(&seq, c->head, 8);
  memcpy(&t, c->head + 8, 8);
  if ((int64_t)seq <= c->last_seq) {
    g_out_of_order++;
    return;
  }
  if ((int64_t)seq > c->last_seq + 1) g_missing += (uint64_t)((int64_t)seq - c->last_seq - 1);
  c->last_seq = (int64_t)seq;
  g_deliveries += g_measuring;
  if (g_measuring) hist_add(g_now - t);
  if (++g_got[seq % RING] == (uint32_t)g_subs) {
    g_completed += g_measuring;
    g_last_progress = g_now;
    while (g_done_seq < g_next_seq && g_got[g_done_seq % RING] >= (uint32_t)g_subs) g_done_seq++;
  }
}

static int parse(conn_t *c, const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (c->fh_need > 0) {
      while (c->fh_need > 0 && i < n) {
        c->fh[c->fh_len++] = p[i++];
        if (--c->fh_need == 0 && c->fh_len == 2) {
          int l7 = c->fh[1] & 0x7f;
          c->fh_need = l7 == 126 ? 2 : l7 == 127 ? 8 : 0;
        }
      }
      if (c->fh_need > 0) break;
      c->fin = c->fh[0] >> 7;
      c->opcode = c->fh[0] & 0x0f;
      int l7 = c->fh[1] & 0x7f;
      c->left = l7 == 126 ? ((uint64_t)c->fh[2] << 8) | c->fh[3] : (uint64_t)l7;
      if (l7 == 127) {
        c->left = 0;
        for (int k = 2; k < 10; k++) c->left = (c->left << 8) | c->fh[k];
      }
      if (c->opcode == 1 || c->opcode == 2) {
        c->head_len = 0;
        c->msg_text = c->opcode == 1;
      }
    }
    size_t take = (size_t)((uint64_t)(n - i) < c->left ? (uint64_t)(n - i) : c->left);
    if (c->opcode < 8)
      for (size_t k = 0; k < take && c->head_len < 16; k++) c->head[c->head_len++] = p[i + k];
    i += take;
    c->left -= take;
    if (c->left > 0) break;
    if (c->opcode == 8) {
      if (!g_stopping) g_errors++; /* the server closed a connection mid-run */
      c->st = ST_CLOSING;
    } else if (c->opcode == 9) {
      append_frame(c, 10, NULL, 0);
    } else if (c->opcode < 8 && c->fin) {
      on_data(c);
    }
    c->fh_len = 0;
    c->fh_need = 2;
  }
  return 1;
}

static const char KEY[] = "dGhlIHNhbXBsZSBub25jZQ==";

static void conn_free(conn_t *c) {
  if (c->fd >= 0) {
    epoll_ctl(g_epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
  }
  c->fd = -1;
  c->st = ST_FREE;
}

static void on_readable(conn_t *c) {
  static uint8_t buf[256 * 1024];
  for (int round = 0; round < 4; round++) {
    ssize_t n = read(c->fd, buf, sizeof buf);
    if (n <= 0) {
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
      if (!g_stopping) g_errors++;
      conn_free(c);
      return;
    }
    const uint8_t *p = buf;
    size_t len = (size_t)n;
    if (c->st == ST_HANDSHAKE) {
      size_t room = sizeof c->hbuf - 1 - c->hlen, take = len < room ? len : room;
      memcpy(c->hbuf + c->hlen, p, take);
      c->hlen += take;
      c->hbuf[c->hlen] = 0;
      char *end = strstr(c->hbuf, "\r\n\r\n");
      if (!end) continue;
      if (strncmp(c->hbuf, "HTTP/1.1 101", 12) != 0) {
        g_errors++;
        conn_free(c);
        return;
      }
      size_t consumed = take - (c->hlen - (size_t)(end + 4 - c->hbuf));
      p += consumed;
      len -= consumed;
      c->st = ST_OPEN;
    }
    if (len > 0) parse(c, p, len);
    if ((size_t)n < sizeof buf) break;
  }
  if (c->fd >= 0 && !flush(c)) conn_free(c);
}

static void on_writable(conn_t *c) {
  if (c->st == ST_CONNECTING) {
    int err = 0;
    socklen_t l = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
    if (err) {
      g_errors++;
      conn_free(c);
      return;
    }
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                     c->publisher ? g_pub_path : g_sub_path, c->port, KEY);
    wappend(c, req, (size_t)n);
    c->st = ST_HANDSHAKE;
  }
  if (!flush(c)) conn_free(c);
}

static void start_conn(conn_t *c) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)c->port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  c->fd = fd;
  c->st = ST_CONNECTING;
  c->fh_need = 2;
  c->want_out = 1;
  c->last_seq = -1;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
  if (epoll_ctl(g_epfd, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) g_errors++;
}

/* --- CPU accounting, as loadgen.c --- */

static double cpu_self(void) {
  struct rusage r;
  getrusage(RUSAGE_SELF, &r);
  return (double)r.ru_utime.tv_sec + (double)r.ru_utime.tv_usec / 1e6 + (double)r.ru_stime.tv_sec +
         (double)r.ru_stime.tv_usec / 1e6;
}

static double cpu_pid(int pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  if (!p) return 0;
  unsigned long utime = 0, stime = 0;
  sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime);
  return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static double cpu_servers(void) {
  double t = 0;
  for (int i = 0; i < g_npids; i++) t += cpu_pid(g_pids[i]);
  return t;
}

/* --- main --- */

static void usage(void) {
  fprintf(stderr,
          "usage: fanout --ports P[,P] [--subs N] [--window N] [--size BYTES] [--sub-path P]\n"
          "       [--pub-path P] [--warmup-ms MS] [--duration-ms MS] [--pids PID,PID]\n");
  exit(2);
}

static void parse_args(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) usage();
    i++;
    if (!strcmp(k, "--ports") || !strcmp(k, "--port")) {
      char *s = strdup(v);
      for (char *t = strtok(s, ","); t && g_nports < 8; t = strtok(NULL, ",")) g_ports[g_nports++] = atoi(t);
    } else if (!strcmp(k, "--subs"))
      g_subs = atoi(v);
    else if (!strcmp(k, "--window"))
      g_window = atoi(v);
    else if (!strcmp(k, "--size"))
      g_size = (size_t)atol(v);
    else if (!strcmp(k, "--sub-path"))
      g_sub_path = v;
    else if (!strcmp(k, "--pub-path"))
      g_pub_path = v;
    else if (!strcmp(k, "--warmup-ms"))
      g_warmup_ms = atoi(v);
    else if (!strcmp(k, "--duration-ms"))
      g_duration_ms = atoi(v);
    else if (!strcmp(k, "--concurrency"))
      g_concurrency = atoi(v);
    else if (!strcmp(k, "--pids")) {
      char *s = strdup(v);
      for (char *t = strtok(s, ","); t && g_npids < 16; t = strtok(NULL, ",")) g_pids[g_npids++] = atoi(t);
    } else
      usage();
  }
  if (!g_nports || g_subs < 1 || g_window < 1 || g_window >= RING || g_size < 16 || g_size > 65535)
    usage();
}

int main(int argc, char **argv) {
  parse_args(argc, argv);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  srand((unsigned)now_us() ^ (unsigned)getpid());
  for (int i = 0; i < 4; i++) g_mask[i] = (uint8_t)(rand() & 0xff);
  g_epfd = epoll_create1(EPOLL_CLOEXEC);
  if (g_epfd < 0) die("epoll_create1");
  g_nconns = g_subs + 1;
  g_c = calloc((size_t)g_nconns, sizeof(conn_t));
  for (int i = 0; i < g_nconns; i++) {
    g_c[i].fd = -1;
    g_c[i].port = i < g_subs ? g_ports[i % g_nports] : g_ports[0];
    g_c[i].publisher = i == g_subs;
  }

  g_now = now_us();
  uint64_t t_start = g_now, t_publish = 0, t_measure = 0, t_end = 0;
  double cpu0 = 0, srv0 = 0, cpu1 = 0, srv1 = 0;
  uint64_t m_sent = 0;
  int next = 0;
  struct epoll_event evs[512];

  for (;;) {
    int n = epoll_wait(g_epfd, evs, 512, 20);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    g_now = now_us();
    for (int i = 0; i < n; i++) {
      conn_t *c = evs[i].data.ptr;
      if (c->fd < 0) continue;
      if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
      if (c->fd >= 0 && (evs[i].events & EPOLLOUT)) on_writable(c);
    }
    /* Open the connections with a bounded number of handshakes in flight. */
    while (next < g_nconns && (uint64_t)next - g_ready - g_errors < (uint64_t)g_concurrency)
      start_conn(&g_c[next++]);
    if (g_errors) {
      printf("{\"error\":\"%llu connections failed or were closed by the server (ready %llu of %d)\"}\n",
             (unsigned long long)g_errors, (unsigned long long)g_ready, g_nconns);
      return 1;
    }
    if (!g_publishing) {
      if (g_ready == (uint64_t)g_nconns) {
        g_publishing = 1;
        t_publish = g_last_progress = g_now;
      } else if (g_now - t_start > 60000000) {
        printf("{\"error\":\"only %llu of %d connections were ready after 60 s\"}\n",
               (unsigned long long)g_ready, g_nconns);
        return 1;
      }
      continue;
    }
    publish_more();
    if (!t_measure && g_now - t_publish >= (uint64_t)g_warmup_ms * 1000) {
      t_measure = g_now;
      cpu0 = cpu_self();
      srv0 = cpu_servers();
      m_sent = g_next_seq;
      g_measuring = 1;
    }
    if (t_measure && g_now - t_measure >= (uint64_t)g_duration_ms * 1000) {
      t_end = g_now;
      cpu1 = cpu_self();
      srv1 = cpu_servers();
      g_measuring = 0;
      m_sent = g_next_seq - m_sent;
      break;
    }
    if (g_now - g_last_progress > 5000000) {
      printf("{\"error\":\"no message reached every subscriber for 5 s (in flight %llu, missing %llu, out of order %llu)\"}\n",
             (unsigned long long)(g_next_seq - g_done_seq), (unsigned long long)g_missing,
             (unsigned long long)g_out_of_order);
      return 1;
    }
  }

  /* Close every connection; the servers' side of the handshake is not measured. */
  g_stopping = 1;
  for (int i = 0; i < g_nconns; i++) {
    conn_t *c = &g_c[i];
    if (c->fd < 0) continue;
    uint8_t code[2] = {0x03, 0xe8};
    append_frame(c, 8, code, 2);
    flush(c);
  }
  uint64_t deadline = now_us() + 2000000;
  for (;;) {
    int live = 0;
    for (int i = 0; i < g_nconns; i++) live += g_c[i].fd >= 0;
    if (!live || now_us() > deadline) break;
    int n = epoll_wait(g_epfd, evs, 512, 20);
    g_now = now_us();
    for (int i = 0; i < n; i++) {
      conn_t *c = evs[i].data.ptr;
      if (c->fd >= 0 && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) on_readable(c);
    }
  }

  double wall = (double)(t_end - t_measure) / 1e6;
  printf("{\"mode\":\"fanout\",\"subs\":%d,\"ports\":%d,\"window\":%d,\"size\":%zu,\"wall_s\":%.4f,"
         "\"published\":%llu,\"completed\":%llu,\"deliveries\":%llu,\"deliveries_per_s\":%.1f,"
         "\"msgs_per_s\":%.1f,\"lat_p50_us\":%.0f,\"lat_p99_us\":%.0f,\"lat_p999_us\":%.0f,"
         "\"client_cpu_s\":%.4f,\"server_cpu_s\":%.4f,\"server_cpu_us_per_delivery\":%.4f,"
         "\"missing\":%llu,\"out_of_order\":%llu}\n",
         g_subs, g_nports, g_window, g_size, wall, (unsigned long long)m_sent,
         (unsigned long long)g_completed, (unsigned long long)g_deliveries,
         (double)g_deliveries / wall, (double)g_completed / wall, hist_pct(0.5), hist_pct(0.99),
         hist_pct(0.999), cpu1 - cpu0, srv1 - srv0,
         g_deliveries ? (srv1 - srv0) * 1e6 / (double)g_deliveries : -1,
         (unsigned long long)g_missing, (unsigned long long)g_out_of_order);
  return 0;
}
