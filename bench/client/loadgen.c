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
 * --text sends a given text message instead of --size letters (a channel protocol frame, with
 * --protocol for the subprotocol the upgrade offers); --reply-size is then the length every
 * answer must have (a response frame), any other counting as bad.
 *
 * It measures only the window after the warmup, and reports its own CPU time (getrusage), the
 * CPU time of the server processes given with --pids (from /proc/<pid>/stat) and the busy time
 * of the whole machine (from /proc/stat) over that same window, as one JSON line on stdout.
 *
 * The connections, the handshake, the frames and the measures are in ws.c, shared with fanout.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "ws.h"

enum mode { MODE_ECHO, MODE_CHURN, MODE_IDLE, MODE_LATENCY };
enum state { ST_OPEN = WS_OPEN, ST_CLOSING, ST_WAIT_EOF };

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
static const char *g_text;     /* --text: the message itself (a protocol frame), not --size letters */
static long g_reply_size = -1; /* --reply-size: the length every answer must have; -1: the message's */
static const char *g_protocol; /* --protocol: the subprotocol the upgrade offers */

/* --- time and measures --- */

static uint64_t g_now; /* microseconds, monotonic, refreshed after every epoll_wait */

static hist_t g_rtt, g_close, g_eof, g_connect;

/* --- connections --- */

typedef struct {
  ws_t ws; /* first: epoll's pointer and the callbacks' are both */
  /* pipelining */
  int outstanding;
  uint64_t *ring;
  int ring_head, ring_count;
  uint64_t t_connect, t_close;
  unsigned gen; /* bumped by every new connection in this slot */
} conn_t;

static conn_t *g_c;
static uint8_t *g_frame; /* the masked message frame, built once */
static size_t g_frame_len;

/* counters, and their values when the measured window began */
static uint64_t g_msgs, g_bytes, g_done, g_errors, g_started, g_opened, g_unclean, g_bad;
static uint64_t m_msgs, m_bytes, m_done;
static int g_measuring, g_stopping;

static void build_message_frame(void) {
  if (g_text) g_size = strlen(g_text);
  uint8_t *payload = malloc(g_size ? g_size : 1);
  for (size_t i = 0; i < g_size; i++) payload[i] = g_text ? (uint8_t)g_text[i] : (uint8_t)('a' + i % 26);
  ws_t tmp = {0};
  ws_frame(&tmp, g_binary ? 2 : 1, payload, g_size);
  g_frame = tmp.wbuf;
  g_frame_len = tmp.wlen;
  free(payload);
}

static void send_message(conn_t *c) {
  ws_append(&c->ws, g_frame, g_frame_len);
  if (c->ring) {
    int slot = (c->ring_head + c->ring_count) % g_window;
    c->ring[slot] = g_now;
    c->ring_count++;
  }
  c->outstanding++;
}

static void send_close(conn_t *c, uint16_t code) {
  uint8_t p[2] = {(uint8_t)(code >> 8), (uint8_t)code};
  ws_frame(&c->ws, 8, p, 2);
  c->ws.st = ST_CLOSING;
  c->t_close = g_now;
}

static void start_conn(conn_t *c);

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
  ws_free(&c->ws);
  if (g_mode == MODE_CHURN && !g_stopping) start_conn(c);
}

void on_end(ws_t *ws, int eof) {
  conn_t *c = (conn_t *)ws;
  conn_end(c, eof && c->ws.st == ST_WAIT_EOF);
}

void on_message(ws_t *ws) {
  conn_t *c = (conn_t *)ws;
  int opcode = ws->msg_opcode;
  uint64_t len = ws->msg_len;
  if (ws->st != ST_OPEN) return; /* data after our close frame is discarded */
  /* not an echo of what we sent (or, with --reply-size, not an answer of that length) */
  if (opcode != (g_binary ? 2 : 1) || len != (g_reply_size >= 0 ? (uint64_t)g_reply_size : g_size)) g_bad++;
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

void on_control(ws_t *ws) {
  conn_t *c = (conn_t *)ws;
  if (ws->opcode == 9) { /* ping: answer with a pong carrying the same payload */
    if (ws->st == ST_OPEN || ws->st == ST_CLOSING) ws_frame(ws, 10, ws->ctrl, (size_t)ws->ctrl_len);
  } else if (ws->opcode == 8) {
    if (ws->st == ST_CLOSING) {
      if (g_measuring) hist_add(&g_close, g_now - c->t_close);
      ws->st = ST_WAIT_EOF;
    } else if (ws->st == ST_OPEN) {
      /* The server closed first: echo its code (RFC 6455 section 5.5.1) and count it. */
      uint16_t code = ws->ctrl_len >= 2 ? (uint16_t)((ws->ctrl[0] << 8) | ws->ctrl[1]) : 1000;
      if (!g_stopping) g_errors++;
      send_close(c, code == 1005 ? 1000 : code);
      c->t_close = 0;
      ws->st = ST_WAIT_EOF;
    }
  }
}

void on_open(ws_t *ws) {
  conn_t *c = (conn_t *)ws;
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

static void start_conn(conn_t *c) {
  c->gen++;
  c->t_connect = g_now;
  c->t_close = 0;
  c->outstanding = 0;
  c->ring_head = c->ring_count = 0;
  g_started++;
  if (!ws_connect(&c->ws)) g_errors++;
}

/* --- main --- */

static void usage(void) {
  fprintf(stderr,
          "usage: loadgen echo|churn|latency|idle --port N [--host H] [--path P] [--conns N] [--window N]\n"
          "       [--size BYTES] [--binary] [--warmup-ms MS] [--duration-ms MS]\n"
          "       [--concurrency N] [--pids PID,PID] [--text MESSAGE] [--reply-size BYTES]\n"
          "       [--protocol SUBPROTOCOL]\n");
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
    else if (!strcmp(k, "--text"))
      g_text = v;
    else if (!strcmp(k, "--reply-size"))
      g_reply_size = atol(v);
    else if (!strcmp(k, "--protocol"))
      g_protocol = v;
    else if (!strcmp(k, "--pids"))
      g_npids = parse_ints(v, g_pids, 16);
    else
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
    if (g_c[i].ws.st != WS_FREE) live++;
  return live;
}

/* Sends a close frame on every open connection. */
static void begin_stop(void) {
  g_stopping = 1;
  for (int i = 0; i < g_conns; i++) {
    conn_t *c = &g_c[i];
    if (c->ws.st == ST_OPEN) {
      send_close(c, 1000);
      if (!ws_flush(&c->ws)) conn_end(c, 0);
    }
    /* Connections still opening get their close frame once open (see on_open), so that no
       server sees an abnormal closure. */
  }
}

int main(int argc, char **argv) {
  parse_args(argc, argv);
  /* Idle runs hold thousands of sockets: raise the descriptor limit as far as allowed. */
  unsigned long limit = raise_fd_limit();
  if (limit && (unsigned long)g_conns + 16 > limit) {
    printf("{\"error\":\"descriptor limit %lu is below %d connections\"}\n", limit, g_conns);
    return 1;
  }
  ws_init();
  build_message_frame();

  g_c = calloc((size_t)g_conns, sizeof(conn_t));
  for (int i = 0; i < g_conns; i++) {
    g_c[i].ws = (ws_t){.fd = -1, .host = g_host, .port = g_port, .path = g_path, .protocol = g_protocol};
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
    int n = epoll_wait(ws_epfd, evs, 512, timeout);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    g_now = now_us();
    for (int i = 0; i < n; i++) {
      if (evs[i].data.ptr == NULL) { /* stdin (idle mode): time to close */
        char line[256];
        ssize_t r = read(0, line, sizeof line);
        (void)r;
        epoll_ctl(ws_epfd, EPOLL_CTL_DEL, 0, NULL);
        begin_stop();
        t_stop_deadline = g_now + 5000000;
        continue;
      }
      conn_t *c = evs[i].data.ptr;
      unsigned gen = c->gen;
      if (c->ws.fd < 0) continue;
      if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) ws_on_readable(&c->ws);
      /* churn may have ended this connection and started a new one in the same slot */
      if (c->ws.fd >= 0 && c->gen == gen && (evs[i].events & EPOLLOUT)) ws_on_writable(&c->ws);
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
          epoll_ctl(ws_epfd, EPOLL_CTL_ADD, 0, &ev);
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
      srv0 = cpu_pids(g_pids, g_npids);
      mach0 = cpu_machine();
      m_msgs = g_msgs;
      m_bytes = g_bytes;
      m_done = g_done;
      g_measuring = 1;
    }
    if (t_measure && !t_end && g_now - t_measure >= (uint64_t)g_duration_ms * 1000) {
      t_end = g_now;
      cpu1 = cpu_self();
      srv1 = cpu_pids(g_pids, g_npids);
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
