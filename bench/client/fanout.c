/*
 * fanout: the load generator of the fan-out workload. One publisher, N subscribers on one topic.
 *
 * It opens N subscriber connections (to --sub-path, /fanout?role=sub by default, spread
 * round-robin over the --ports given, so that two instances can share them) and one publisher
 * connection (to --pub-path, /fanout?role=pub, on the first port: one path for both, since
 * crossws groups its peers by path). Every connection waits for the server's "ready" text, which
 * the server sends once the subscription counts. Then the publisher sends numbered binary messages, each carrying the
 * time it was sent, keeping --window messages in flight: a message is in flight until every
 * subscriber has it. The server fans each one out to all N subscribers.
 *
 * Over the measured window it reports deliveries per second (messages times subscribers), the
 * delivery latency (from the publisher's send to each subscriber's receive, one clock) at p50,
 * p99 and p99.9, and the CPU time of itself and of the servers (--pids). It also checks the
 * topic guarantees on the way: each subscriber must get the messages in order, each once
 * (out_of_order, duplicates and missing are counted), and it fails when the window stalls.
 *
 * The connections, the handshake, the frames and the measures are in ws.c, shared with
 * loadgen.c; this file holds only the workload.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "ws.h"

enum state { ST_OPEN = WS_OPEN, ST_READY, ST_CLOSING };

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

static hist_t g_latency;

/* --- connections --- */

typedef struct {
  ws_t ws; /* first: epoll's pointer and the callbacks' are both */
  int publisher;
  int64_t last_seq;
} conn_t;

static conn_t *g_c;
static int g_nconns;

/* The in-flight messages: how many subscribers got each, by sequence modulo RING. */
#define RING 65536
static uint32_t g_got[RING];
static uint64_t g_next_seq, g_done_seq; /* all below g_done_seq reached every subscriber */
static uint64_t g_deliveries, g_completed, g_out_of_order, g_missing, g_errors, g_ready;
static int g_measuring, g_publishing, g_stopping;
static uint64_t g_last_progress;

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
    ws_frame(&p->ws, 2, payload, g_size);
    sent = 1;
  }
  if (sent && !ws_flush(&p->ws)) g_errors++;
}

void on_open(ws_t *ws) { (void)ws; }

void on_message(ws_t *ws) {
  conn_t *c = (conn_t *)ws;
  if (ws->msg_opcode == 1) { /* the server's "ready": the subscription counts */
    if (ws->st == ST_OPEN) {
      ws->st = ST_READY;
      g_ready++;
    }
    return;
  }
  if (c->publisher || ws->head_len < 16) return;
  uint64_t seq, t;
  memcpy(&seq, ws->head, 8);
  memcpy(&t, ws->head + 8, 8);
  if ((int64_t)seq <= c->last_seq) {
    g_out_of_order++;
    return;
  }
  if ((int64_t)seq > c->last_seq + 1) g_missing += (uint64_t)((int64_t)seq - c->last_seq - 1);
  c->last_seq = (int64_t)seq;
  g_deliveries += g_measuring;
  if (g_measuring) hist_add(&g_latency, g_now - t);
  if (++g_got[seq % RING] == (uint32_t)g_subs) {
    g_completed += g_measuring;
    g_last_progress = g_now;
    while (g_done_seq < g_next_seq && g_got[g_done_seq % RING] >= (uint32_t)g_subs) g_done_seq++;
  }
}

void on_control(ws_t *ws) {
  if (ws->opcode == 8) {
    if (!g_stopping) g_errors++; /* the server closed a connection mid-run */
    ws->st = ST_CLOSING;
  } else if (ws->opcode == 9) {
    ws_frame(ws, 10, ws->ctrl, (size_t)ws->ctrl_len);
  }
}

void on_end(ws_t *ws, int eof) {
  (void)eof;
  if (!g_stopping) g_errors++;
  ws_free(ws);
}

static void start_conn(conn_t *c) {
  c->last_seq = -1;
  if (!ws_connect(&c->ws)) g_errors++;
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
    if (!strcmp(k, "--ports") || !strcmp(k, "--port"))
      g_nports = parse_ints(v, g_ports, 8);
    else if (!strcmp(k, "--subs"))
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
    else if (!strcmp(k, "--pids"))
      g_npids = parse_ints(v, g_pids, 16);
    else
      usage();
  }
  if (!g_nports || g_subs < 1 || g_window < 1 || g_window >= RING || g_size < 16 || g_size > 65535)
    usage();
}

int main(int argc, char **argv) {
  parse_args(argc, argv);
  raise_fd_limit();
  ws_init();
  g_nconns = g_subs + 1;
  g_c = calloc((size_t)g_nconns, sizeof(conn_t));
  for (int i = 0; i < g_nconns; i++) {
    g_c[i].publisher = i == g_subs;
    g_c[i].ws = (ws_t){.fd = -1,
                       .host = "127.0.0.1",
                       .port = i < g_subs ? g_ports[i % g_nports] : g_ports[0],
                       .path = g_c[i].publisher ? g_pub_path : g_sub_path};
  }

  g_now = now_us();
  uint64_t t_start = g_now, t_publish = 0, t_measure = 0, t_end = 0;
  double cpu0 = 0, srv0 = 0, cpu1 = 0, srv1 = 0;
  uint64_t m_sent = 0;
  int next = 0;
  struct epoll_event evs[512];

  for (;;) {
    int n = epoll_wait(ws_epfd, evs, 512, 20);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    g_now = now_us();
    for (int i = 0; i < n; i++) {
      conn_t *c = evs[i].data.ptr;
      if (c->ws.fd < 0) continue;
      if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) ws_on_readable(&c->ws);
      if (c->ws.fd >= 0 && (evs[i].events & EPOLLOUT)) ws_on_writable(&c->ws);
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
      srv0 = cpu_pids(g_pids, g_npids);
      m_sent = g_next_seq;
      g_measuring = 1;
    }
    if (t_measure && g_now - t_measure >= (uint64_t)g_duration_ms * 1000) {
      t_end = g_now;
      cpu1 = cpu_self();
      srv1 = cpu_pids(g_pids, g_npids);
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
    if (c->ws.fd < 0) continue;
    uint8_t code[2] = {0x03, 0xe8};
    ws_frame(&c->ws, 8, code, 2);
    ws_flush(&c->ws);
  }
  uint64_t deadline = now_us() + 2000000;
  for (;;) {
    int live = 0;
    for (int i = 0; i < g_nconns; i++) live += g_c[i].ws.fd >= 0;
    if (!live || now_us() > deadline) break;
    int n = epoll_wait(ws_epfd, evs, 512, 20);
    g_now = now_us();
    for (int i = 0; i < n; i++) {
      conn_t *c = evs[i].data.ptr;
      if (c->ws.fd >= 0 && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) ws_on_readable(&c->ws);
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
         (double)g_deliveries / wall, (double)g_completed / wall, hist_pct(&g_latency, 0.5),
         hist_pct(&g_latency, 0.99), hist_pct(&g_latency, 0.999), cpu1 - cpu0, srv1 - srv0,
         g_deliveries ? (srv1 - srv0) * 1e6 / (double)g_deliveries : -1,
         (unsigned long long)g_missing, (unsigned long long)g_out_of_order);
  return 0;
}
