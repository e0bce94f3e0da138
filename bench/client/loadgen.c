/*
 * loadgen: a small WebSocket load generator for the Handshake benchmarks.
 *
 * One thread, epoll, non-blocking sockets. It speaks just enough RFC 6455 to be a compliant
 * client: it masks every frame it sends, answers pings, and runs the close handshake (sends a
 * close frame, waits for the server's close frame, then for the server to close TCP, as
 * RFC 6455 section 7.1.1 asks of a client).
 *
 * Workloads (the first argument):
 *   echo   N connections, each keeping a window of messages outstanding; every echo that
 *          comes back is answered with a new message. Reports messages/s, MB/s and RTT.
 *   churn  N slots, each looping: connect, handshake, one echo, close handshake, wait for EOF.
 *          Reports connections/s and the close-handshake latency.
 *   latency  one connection, one message in flight (echo with --conns 1 --window 1): the
 *          round trip of a lone message, with nothing queued behind it. Reports RTT
 *          percentiles to the microsecond (p50, p90, p99, p99.9) and the mean.
 *   idle   opens N connections, prints a READY line, holds them until stdin has a line or
 *          ends, then closes them all.
 *
 * It measures only the window after the warmup, and reports its own CPU time (getrusage), the
 * CPU time of the server processes given with --pids (from /proc/<pid>/stat) and the busy time
 * of the whole machine (from /proc/stat) over that same window, as one JSON line on stdout.
 *
 * Every message is sent with the same masking key (chosen at random at start): servers cannot
 * tell, and it keeps the client's cost per message to one memcpy.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum mode { MODE_ECHO, MODE_CHURN, MODE_IDLE, MODE_LATENCY };
enum state { ST_FREE, ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_CLOSING, ST_WAIT_EOF };

/* --- options --- */

static enum mode g_mode;
static const char *g_host = "127.0.0.1";
static int g_port;
static const char *g_path = "/";
static int g_conns = 64;
static int g_window = 16;
static size_t g_size = 32;
static int g_binary;
static int g_warmup_ms = 500;
static int g_duration_ms = 2000;
static int g_concurrency = 256;
static int g_pids[16];
static int g_npids;
static int g_latency; /* the latency workload: echo, one connection, one message */

/* --- time --- */

static uint64_t g_now; /* microseconds, monotonic, refreshed after every epoll_wait */

static uint64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* --- latency histogram: 1 us buckets below 100 ms, 1 ms buckets up to 60 s --- */

#define HIST_US 100000
#define HIST_MS 60000
typedef struct {
  uint32_t us[HIST_US];
  uint32_t ms[HIST_MS];
  uint64_t n;
} hist_t;

static void hist_add(hist_t *h, uint64_t v) {
  if (v < HIST_US)
    h->us[v]++;
  else if (v / 1000 < HIST_MS)
    h->ms[v / 1000]++;
  else
    h->ms[HIST_MS - 1]++;
  h->n++;
}

static double hist_mean(const hist_t *h) {
  if (h->n == 0) return -1;
  double sum = 0;
  for (int i = 0; i < HIST_US; i++) sum += (double)h->us[i] * i;
  for (int i = 0; i < HIST_MS; i++) sum += (double)h->ms[i] * i * 1000.0;
  return sum / (double)h->n;
}

static double hist_pct(const hist_t *h, double p) {
  if (h->n == 0) return -1;
  uint64_t rank = (uint64_t)(p * (double)h->n);
  if (rank >= h->n) rank = h->n - 1;
  uint64_t seen = 0;
  for (int i = 0; i < HIST_US; i++) {
    seen += h->us[i];
    if (seen > rank) return i;
  }
  for (int i = 0; i < HIST_MS; i++) {
    seen += h->ms[i];
    if (seen > rank) return (double)i * 1000.0;
  }
  return -1;
}

static hist_t g_rtt, g_close, g_eof, g_connect;

/* --- connections --- */

typedef struct {
  int fd;
  enum state st;
  int want_out; /* EPOLLOUT registered */
  uint8_t *wbuf;
  size_t wlen, woff, wcap;
  char hbuf[2048];
  size_t hlen;
  /* frame parser */
  uint8_t fh[14];
  int fh_len, fh_need;
  uint64_t left;
  int opcode, fin, masked;
  uint8_t ctrl[125];
  int ctrl_len;
  uint64_t msg_len;
  int msg_opcode;
  /* pipelining */
  int outstanding;
  uint64_t *ring;
  int ring_head, ring_count;
  uint64_t t_connect, t_close;
  unsigned gen; /* bumped by every new connection in this slot */
} conn_t;

static conn_t *g_c;
static int g_epfd;
static uint8_t *g_frame; /* the masked message frame, built once */
static size_t g_frame_len;
static uint8_t g_mask[4];

/* counters, and their values when the measured window began */
static uint64_t g_msgs, g_bytes, g_done, g_errors, g_started, g_opened, g_unclean, g_bad;
static uint64_t m_msgs, m_bytes, m_done;
static int g_measuring, g_stopping;

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

static void wreserve(conn_t *c, size_t n) {
  if (c->wlen + n <= c->wcap) return;
  if (c->woff > 0) {
    memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
    c->wlen -= c->woff;
    c->woff = 0;
    if (c->wlen + n <= c->wcap) return;
  }
  size_t cap = c->wcap ? c->wcap : 4096;
  while (cap < c->wlen + n) cap *= 2;
  c->wbuf = realloc(c->wbuf, cap);
  if (!c->wbuf) die("realloc");
  c->wcap = cap;
}

static void wappend(conn_t *c, const void *p, size_t n) {
  wreserve(c, n);
  memcpy(c->wbuf + c->wlen, p, n);
  c->wlen += n;
}

/* Appends one masked frame. */
static void append_frame(conn_t *c, int opcode, const uint8_t *payload, size_t len) {
  uint8_t h[14];
  size_t hl = 0;
  h[hl++] = 0x80 | (uint8_t)opcode;
  if (len < 126) {
    h[hl++] = 0x80 | (uint8_t)len;
  } else if (len < 65536) {
    h[hl++] = 0x80 | 126;
    h[hl++] = (uint8_t)(len >> 8);
    h[hl++] = (uint8_t)len;
  } else {
    h[hl++] = 0x80 | 127;
    for (int i = 7; i >= 0; i--) h[hl++] = (uint8_t)((uint64_t)len >> (8 * i));
  }
  memcpy(h + hl, g_mask, 4);
  hl += 4;
  wreserve(c, hl + len);
  memcpy(c->wbuf + c->wlen, h, hl);
  c->wlen += hl;
  for (size_t i = 0; i < len; i++) c->wbuf[c->wlen + i] = payload[i] ^ g_mask[i & 3];
  c->wlen += len;
}

static void build_message_frame(void) {
  uint8_t *payload = malloc(g_size ? g_size : 1);
  for (size_t i = 0; i < g_size; i++) payload[i] = (uint8_t)('a' + i % 26);
  conn_t tmp = {0};
  append_frame(&tmp, g_binary ? 2 : 1, payload, g_size);
  g_frame = tmp.wbuf;
  g_frame_len = tmp.wlen;
  free(payload);
}

static void send_message(conn_t *c) {
  wappend(c, g_frame, g_frame_len);
  if (c->ring) {
    int slot = (c->ring_head + c->ring_count) % g_window;
    c->ring[slot] = g_now;
    c->ring_count++;
  }
  c->outstanding++;
}

static void send_close(conn_t *c, uint16_t code) {
  uint8_t p[2] = {(uint8_t)(code >> 8), (uint8_t)code};
  append_frame(c, 8, p, 2);
  c->st = ST_CLOSING;
  c->t_close = g_now;
}

static void conn_free(conn_t *c);
static void start_conn(conn_t *c);

/* Writes what it can; 0 when the connection failed. */
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

/* The connection ended (EOF after the close handshake, or a failure). */
static void conn_end(conn_t *c, int clean) {
  if (!clean) {
    g_unclean++;
    if (!g_stopping) g_errors++;
  }
  if (clean && c->t_close) {
    if (g_measuring) hist_add(&g_eof, g_now - c->t_close);
    if (g_mode == MODE_CHURN) g_done++;
  }
  conn_free(c);
  if (g_mode == MODE_CHURN && !g_stopping) start_conn(c);
}

static void on_message(conn_t *c, int opcode, uint64_t len) {
  if (c->st != ST_OPEN) return; /* data after our close frame is discarded */
  if (opcode != (g_binary ? 2 : 1) || len != g_size) g_bad++; /* not an echo of what we sent */
  g_msgs++;
  g_bytes += len;
  if (c->ring && c->ring_count > 0) {
    if (g_measuring) hist_add(&g_rtt, g_now - c->ring[c->ring_head]);
    c->ring_head = (c->ring_head + 1) % g_window;
    c->ring_count--;
  }
  c->outstanding--;
  if (g_mode == MODE_ECHO) {
    if (!g_stopping)
      while (c->outstanding < g_window) send_message(c);
  } else if (g_mode == MODE_CHURN) {
    send_close(c, 1000);
  }
}

static void on_control(conn_t *c) {
  if (c->opcode == 9) { /* ping: answer with a pong carrying the same payload */
    if (c->st == ST_OPEN || c->st == ST_CLOSING) append_frame(c, 10, c->ctrl, (size_t)c->ctrl_len);
  } else if (c->opcode == 8) {
    if (c->st == ST_CLOSING) {
      if (g_measuring) hist_add(&g_close, g_now - c->t_close);
      c->st = ST_WAIT_EOF;
    } else if (c->st == ST_OPEN) {
      /* The server closed first: echo its code (RFC 6455 section 5.5.1) and count it. */
      uint16_t code = c->ctrl_len >= 2 ? (uint16_t)((c->ctrl[0] << 8) | c->ctrl[1]) : 1000;
      if (!g_stopping) g_errors++;
      send_close(c, code == 1005 ? 1000 : code);
      c->t_close = 0;
      c->st = ST_WAIT_EOF;
    }
  }
}

/* Feeds received bytes to the frame parser. 0 on a protocol error. */
static int parse(conn_t *c, const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (c->fh_need > 0) {
      while (c->fh_need > 0 && i < n) {
        c->fh[c->fh_len++] = p[i++];
        c->fh_need--;
        if (c->fh_len == 2) {
          int l7 = c->fh[1] & 0x7f;
          c->masked = c->fh[1] >> 7;
          c->fh_need = (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + (c->masked ? 4 : 0);
        }
      }
      if (c->fh_need > 0) break;
      c->fin = c->fh[0] >> 7;
      c->opcode = c->fh[0] & 0x0f;
      int l7 = c->fh[1] & 0x7f;
      if (l7 == 126)
        c->left = ((uint64_t)c->fh[2] << 8) | c->fh[3];
      else if (l7 == 127) {
        c->left = 0;
        for (int k = 2; k < 10; k++) c->left = (c->left << 8) | c->fh[k];
      } else
        c->left = (uint64_t)l7;
      if (c->opcode >= 8 && c->left > 125) return 0;
      c->ctrl_len = 0;
      if (c->opcode == 1 || c->opcode == 2) {
        c->msg_opcode = c->opcode;
        c->msg_len = 0;
      }
    }
    size_t take = (size_t)((uint64_t)(n - i) < c->left ? (uint64_t)(n - i) : c->left);
    if (c->opcode >= 8) {
      memcpy(c->ctrl + c->ctrl_len, p + i, take);
      c->ctrl_len += (int)take;
    } else {
      c->msg_len += take;
    }
    i += take;
    c->left -= take;
    if (c->left > 0) break;
    /* A whole frame is in. */
    if (c->opcode >= 8)
      on_control(c);
    else if (c->fin)
      on_message(c, c->msg_opcode, c->msg_len);
    c->fh_len = 0;
    c->fh_need = 2;
  }
  return 1;
}

static const char KEY[] = "dGhlIHNhbXBsZSBub25jZQ==";

static void on_open(conn_t *c) {
  c->st = ST_OPEN;
  hist_add(&g_connect, g_now - c->t_connect);
  if (g_stopping) {
    send_close(c, 1000);
  } else if (g_mode == MODE_ECHO) {
    while (c->outstanding < g_window) send_message(c);
  } else if (g_mode == MODE_CHURN) {
    send_message(c);
  } else {
    g_opened++;
  }
}

static void on_readable(conn_t *c) {
  static uint8_t buf[256 * 1024];
  for (int round = 0; round < 4; round++) {
    ssize_t n = read(c->fd, buf, sizeof buf);
    if (n == 0) {
      conn_end(c, c->st == ST_WAIT_EOF);
      return;
    }
    if (n < 0) {
      if (errno == EAGAIN) break;
      if (errno == EINTR) continue;
      conn_end(c, 0);
      return;
    }
    const uint8_t *p = buf;
    size_t len = (size_t)n;
    if (c->st == ST_HANDSHAKE) {
      size_t room = sizeof c->hbuf - 1 - c->hlen;
      size_t take = len < room ? len : room;
      memcpy(c->hbuf + c->hlen, p, take);
      c->hlen += take;
      c->hbuf[c->hlen] = 0;
      char *end = strstr(c->hbuf, "\r\n\r\n");
      if (!end) {
        if (c->hlen >= sizeof c->hbuf - 1) {
          conn_end(c, 0);
          return;
        }
        continue;
      }
      if (strncmp(c->hbuf, "HTTP/1.1 101", 12) != 0) {
        conn_end(c, 0);
        return;
      }
      size_t head = (size_t)(end + 4 - c->hbuf);
      size_t extra = c->hlen - head; /* frame bytes that came with the 101 */
      size_t consumed = take - extra;
      p += consumed;
      len -= consumed;
      on_open(c);
    }
    if (len > 0 && !parse(c, p, len)) {
      conn_end(c, 0);
      return;
    }
    if ((size_t)n < sizeof buf) break;
  }
  if (c->fd >= 0 && !flush(c)) conn_end(c, 0);
}

static void on_writable(conn_t *c) {
  if (c->st == ST_CONNECTING) {
    int err = 0;
    socklen_t l = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
    if (err) {
      conn_end(c, 0);
      return;
    }
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                     g_path, g_host, g_port, KEY);
    wappend(c, req, (size_t)n);
    c->st = ST_HANDSHAKE;
  }
  if (!flush(c)) conn_end(c, 0);
}

static void start_conn(conn_t *c) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
  inet_pton(AF_INET, g_host, &a.sin_addr);
  c->fd = fd;
  c->gen++;
  c->st = ST_CONNECTING;
  c->fh_len = 0;
  c->fh_need = 2;
  c->t_connect = g_now;
  c->t_close = 0;
  c->outstanding = 0;
  c->ring_head = c->ring_count = 0;
  c->hlen = 0;
  c->woff = c->wlen = 0;
  c->want_out = 1;
  g_started++;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
  if (epoll_ctl(g_epfd, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
    g_errors++;
    /* The socket is registered: its EPOLLOUT reports the failure through SO_ERROR. */
  }
}

static void conn_free(conn_t *c) {
  if (c->fd >= 0) {
    epoll_ctl(g_epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
  }
  c->fd = -1;
  c->st = ST_FREE;
}

/* --- CPU accounting --- */

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
  char *p = strrchr(buf, ')'); /* the command name may hold spaces */
  if (!p) return 0;
  unsigned long utime = 0, stime = 0;
  /* after ')': state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15) */
  sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime);
  return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static double cpu_servers(void) {
  double t = 0;
  for (int i = 0; i < g_npids; i++) t += cpu_pid(g_pids[i]);
  return t;
}

static double cpu_machine(void) {
  FILE *f = fopen("/proc/stat", "r");
  if (!f) return 0;
  unsigned long long v[8] = {0};
  if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
             &v[5], &v[6], &v[7]) != 8) {
    fclose(f);
    return 0;
  }
  fclose(f);
  /* user nice system idle iowait irq softirq steal: all but idle and iowait are busy */
  return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

/* --- main --- */

static void usage(void) {
  fprintf(stderr,
          "usage: loadgen echo|churn|latency|idle --port N [--host H] [--path P] [--conns N] [--window N]\n"
          "       [--size BYTES] [--binary] [--warmup-ms MS] [--duration-ms MS]\n"
          "       [--concurrency N] [--pids PID,PID]\n");
  exit(2);
}

static void parse_args(int argc, char **argv) {
  if (argc < 2) usage();
  if (!strcmp(argv[1], "echo"))
    g_mode = MODE_ECHO;
  else if (!strcmp(argv[1], "churn"))
    g_mode = MODE_CHURN;
  else if (!strcmp(argv[1], "idle"))
    g_mode = MODE_IDLE;
  else if (!strcmp(argv[1], "latency"))
    g_mode = MODE_LATENCY;
  else
    usage();
  for (int i = 2; i < argc; i++) {
    const char *k = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(k, "--binary")) {
      g_binary = 1;
      continue;
    }
    if (!v) usage();
    i++;
    if (!strcmp(k, "--port"))
      g_port = atoi(v);
    else if (!strcmp(k, "--host"))
      g_host = v;
    else if (!strcmp(k, "--path"))
      g_path = v;
    else if (!strcmp(k, "--conns"))
      g_conns = atoi(v);
    else if (!strcmp(k, "--window"))
      g_window = atoi(v);
    else if (!strcmp(k, "--size"))
      g_size = (size_t)atol(v);
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
  if (g_mode == MODE_CHURN) g_window = 1; /* one echo per connection */
  if (g_mode == MODE_LATENCY) { /* the echo workload with a single message in flight */
    g_mode = MODE_ECHO;
    g_latency = 1;
    g_conns = 1;
    g_window = 1;
  }
  if (!g_port || g_conns < 1 || g_window < 1) usage();
}

static int count_live(void) {
  int live = 0;
  for (int i = 0; i < g_conns; i++)
    if (g_c[i].st != ST_FREE) live++;
  return live;
}

/* Sends a close frame on every open connection. */
static void begin_stop(void) {
  g_stopping = 1;
  for (int i = 0; i < g_conns; i++) {
    conn_t *c = &g_c[i];
    if (c->st == ST_OPEN) {
      send_close(c, 1000);
      if (!flush(c)) conn_end(c, 0);
    }
    /* Connections still opening get their close frame once open (see on_open), so that no
       server sees an abnormal closure. */
  }
}

int main(int argc, char **argv) {
  parse_args(argc, argv);
  /* Idle runs hold thousands of sockets: raise the descriptor limit as far as allowed. */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if ((rlim_t)g_conns + 16 > rl.rlim_cur) {
      printf("{\"error\":\"descriptor limit %lu is below %d connections\"}\n",
             (unsigned long)rl.rlim_cur, g_conns);
      return 1;
    }
  }
  srand((unsigned)now_us() ^ (unsigned)getpid());
  for (int i = 0; i < 4; i++) g_mask[i] = (uint8_t)(rand() & 0xff);
  build_message_frame();

  g_epfd = epoll_create1(EPOLL_CLOEXEC);
  if (g_epfd < 0) die("epoll_create1");
  g_c = calloc((size_t)g_conns, sizeof(conn_t));
  for (int i = 0; i < g_conns; i++) {
    g_c[i].fd = -1;
    if (g_mode != MODE_IDLE) g_c[i].ring = calloc((size_t)g_window, sizeof(uint64_t));
  }

  g_now = now_us();
  uint64_t t_start = g_now;
  int next = 0; /* idle: the next connection to start */
  if (g_mode == MODE_IDLE) {
    for (; next < g_conns && next < g_concurrency; next++) start_conn(&g_c[next]);
  } else {
    for (int i = 0; i < g_conns; i++) start_conn(&g_c[i]);
  }

  uint64_t t_measure = 0, t_end = 0, t_stop_deadline = 0, t_ready = 0;
  double cpu0 = 0, srv0 = 0, mach0 = 0, cpu1 = 0, srv1 = 0, mach1 = 0;
  int ready_printed = 0;
  struct epoll_event evs[512];

  for (;;) {
    int timeout = 50;
    int n = epoll_wait(g_epfd, evs, 512, timeout);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    g_now = now_us();
    for (int i = 0; i < n; i++) {
      if (evs[i].data.ptr == NULL) { /* stdin (idle mode): time to close */
        char line[256];
        ssize_t r = read(0, line, sizeof line);
        (void)r;
        epoll_ctl(g_epfd, EPOLL_CTL_DEL, 0, NULL);
        begin_stop();
        t_stop_deadline = g_now + 5000000;
        continue;
      }
      conn_t *c = evs[i].data.ptr;
      unsigned gen = c->gen;
      if (c->fd < 0) continue;
      if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
      /* churn may have ended this connection and started a new one in the same slot */
      if (c->fd >= 0 && c->gen == gen && (evs[i].events & EPOLLOUT)) on_writable(c);
    }

    if (g_mode == MODE_IDLE) {
      if (!g_stopping) {
        /* keep the number of handshakes in flight bounded */
        while (next < g_conns && (uint64_t)next - g_opened - g_errors < (uint64_t)g_concurrency) start_conn(&g_c[next++]);
        if (!ready_printed && g_opened + g_errors >= (uint64_t)g_conns) {
          t_ready = g_now;
          printf("{\"ready\":true,\"opened\":%llu,\"errors\":%llu,\"open_s\":%.3f,\"connect_p50_us\":%.0f}\n",
                 (unsigned long long)g_opened, (unsigned long long)g_errors,
                 (double)(t_ready - t_start) / 1e6, hist_pct(&g_connect, 0.5));
          fflush(stdout);
          ready_printed = 1;
          struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
          epoll_ctl(g_epfd, EPOLL_CTL_ADD, 0, &ev);
        }
        if (g_errors > (uint64_t)g_conns / 10 + 10) {
          printf("{\"error\":\"too many failed connections: %llu\"}\n", (unsigned long long)g_errors);
          return 1;
        }
      } else if (count_live() == 0 || g_now > t_stop_deadline) {
        break;
      }
      continue;
    }

    /* echo and churn: warmup, then the measured window, then the close handshakes */
    if (!t_measure && g_now - t_start >= (uint64_t)g_warmup_ms * 1000) {
      t_measure = g_now;
      cpu0 = cpu_self();
      srv0 = cpu_servers();
      mach0 = cpu_machine();
      m_msgs = g_msgs;
      m_bytes = g_bytes;
      m_done = g_done;
      g_measuring = 1;
    }
    if (t_measure && !t_end && g_now - t_measure >= (uint64_t)g_duration_ms * 1000) {
      t_end = g_now;
      cpu1 = cpu_self();
      srv1 = cpu_servers();
      mach1 = cpu_machine();
      g_measuring = 0;
      m_msgs = g_msgs - m_msgs;
      m_bytes = g_bytes - m_bytes;
      m_done = g_done - m_done;
      begin_stop();
      t_stop_deadline = g_now + 3000000;
    }
    if (t_end && (count_live() == 0 || g_now > t_stop_deadline)) break;
    if (!t_measure && g_errors > 1000) {
      printf("{\"error\":\"too many failed connections: %llu\"}\n", (unsigned long long)g_errors);
      return 1;
    }
  }

  if (g_mode == MODE_IDLE) {
    printf("{\"mode\":\"idle\",\"opened\":%llu,\"errors\":%llu,\"unclean_closes\":%llu,\"close_s\":%.3f}\n",
           (unsigned long long)g_opened, (unsigned long long)g_errors, (unsigned long long)g_unclean,
           (double)(g_now - t_ready) / 1e6);
    return 0;
  }

  double wall = (double)(t_end - t_measure) / 1e6;
  double client = cpu1 - cpu0, server = srv1 - srv0, machine = mach1 - mach0;
  uint64_t units = g_mode == MODE_CHURN ? m_done : m_msgs;
  printf("{\"mode\":\"%s\",\"conns\":%d,\"window\":%d,\"size\":%zu,\"binary\":%s,\"wall_s\":%.4f,"
         "\"messages\":%llu,\"msgs_per_s\":%.1f,\"mb_per_s\":%.3f,"
         "\"rtt_p50_us\":%.0f,\"rtt_p90_us\":%.0f,\"rtt_p99_us\":%.0f,\"rtt_p999_us\":%.0f,\"rtt_mean_us\":%.2f,"
         "\"conns_done\":%llu,\"conns_per_s\":%.1f,"
         "\"close_p50_us\":%.0f,\"close_p99_us\":%.0f,\"eof_p50_us\":%.0f,\"connect_p50_us\":%.0f,"
         "\"client_cpu_s\":%.4f,\"server_cpu_s\":%.4f,\"machine_cpu_s\":%.4f,"
         "\"client_cpu_us_per_unit\":%.3f,\"server_cpu_us_per_unit\":%.3f,"
         "\"errors\":%llu,\"bad_echoes\":%llu,\"unclean_closes\":%llu}\n",
         g_mode == MODE_CHURN ? "churn" : g_latency ? "latency" : "echo", g_conns, g_window, g_size, g_binary ? "true" : "false",
         wall, (unsigned long long)m_msgs, (double)m_msgs / wall, (double)m_bytes / wall / 1e6,
         hist_pct(&g_rtt, 0.5), hist_pct(&g_rtt, 0.9), hist_pct(&g_rtt, 0.99), hist_pct(&g_rtt, 0.999),
         hist_mean(&g_rtt), (unsigned long long)m_done,
         (double)m_done / wall, hist_pct(&g_close, 0.5), hist_pct(&g_close, 0.99),
         hist_pct(&g_eof, 0.5), hist_pct(&g_connect, 0.5), client, server, machine,
         units ? client * 1e6 / (double)units : -1, units ? server * 1e6 / (double)units : -1,
         (unsigned long long)g_errors, (unsigned long long)g_bad, (unsigned long long)g_unclean);
  return 0;
}
