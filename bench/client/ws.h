/*
 * ws: what both load generators (loadgen.c, fanout.c) share, built into each of them.
 *
 * - Time, latency histograms and CPU accounting.
 * - A WebSocket client connection: one thread, epoll, non-blocking sockets. It speaks just
 *   enough RFC 6455 to be a compliant client: the upgrade request, the 101, and frames, masking
 *   every frame it sends with one key chosen at random at start (servers cannot tell, and it
 *   keeps a client's cost per message to one memcpy).
 *
 * A program embeds a ws_t as the first member of its own connection struct, and defines the
 * four callbacks below; ws_on_readable and ws_on_writable call them.
 */
#ifndef HANDSHAKE_BENCH_WS_H
#define HANDSHAKE_BENCH_WS_H

#include <stddef.h>
#include <stdint.h>

/* --- time, histograms, CPU --- */

/* Microseconds, monotonic. */
uint64_t now_us(void);

/* Prints {"error":"<what>: <errno's text>"} and exits with 1. */
void die(const char *what);

/* Latency histogram: 1 us buckets below 100 ms, 1 ms buckets up to 60 s (the last holds more). */
#define HIST_US 100000
#define HIST_MS 60000
typedef struct {
  uint32_t us[HIST_US];
  uint32_t ms[HIST_MS];
  uint64_t n;
} hist_t;

void hist_add(hist_t *h, uint64_t v);
double hist_mean(const hist_t *h);     /* -1 when empty */
double hist_pct(const hist_t *h, double p); /* the p-quantile (0 to 1); -1 when empty */

/* Raises this process's descriptor limit as far as allowed, and returns it (0 when unknown). */
unsigned long raise_fd_limit(void);

/* Reads a comma-separated list of at most max integers ("12,34") into out; returns the count. */
int parse_ints(const char *list, int *out, int max);

double cpu_self(void);                        /* this process's user + system time, seconds */
double cpu_pids(const int *pids, int npids);  /* the same for other processes, from /proc */
double cpu_machine(void);                     /* the machine's busy time, from /proc/stat */

/* --- connections --- */

/* A connection's state. A program numbers its own states after WS_OPEN. */
enum { WS_FREE, WS_CONNECTING, WS_HANDSHAKE, WS_OPEN };

typedef struct {
  int fd, st;
  const char *host, *path; /* where ws_connect connects, and the path its upgrade asks for */
  const char *protocol;     /* the subprotocol its upgrade offers, or NULL for none */
  int port;
  int want_out; /* EPOLLOUT registered */
  uint8_t *wbuf;
  size_t wlen, woff, wcap;
  char hbuf[2048]; /* the 101 response, as it arrives */
  size_t hlen;
  /* the frame parser */
  uint8_t fh[14];
  int fh_len, fh_need;
  uint64_t left;
  int opcode, fin;
  uint8_t ctrl[125]; /* the control frame being read: opcode, ctrl and ctrl_len */
  int ctrl_len;
  int msg_opcode; /* the data message being read: 1 text, 2 binary */
  uint64_t msg_len;
  uint8_t head[16]; /* its first bytes */
  int head_len;
} ws_t;

extern int ws_epfd;

/* Creates the epoll instance and picks the masking key. */
void ws_init(void);

/* Starts connecting to ws->host:ws->port. 0 when connect failed at once: the socket is
   registered, and its EPOLLOUT reports the failure (on_end). */
int ws_connect(ws_t *ws);

/* Closes the socket; the connection is WS_FREE. */
void ws_free(ws_t *ws);

/* Queues bytes, or one masked frame, for ws_flush. */
void ws_append(ws_t *ws, const void *p, size_t n);
void ws_frame(ws_t *ws, int opcode, const uint8_t *payload, size_t len);

/* Writes what it can and watches EPOLLOUT for the rest; 0 when the connection failed. */
int ws_flush(ws_t *ws);

/* What epoll reported: reads (the 101, then frames) and writes (the upgrade request). */
void ws_on_readable(ws_t *ws);
void ws_on_writable(ws_t *ws);

/* What the program defines. Only on_end may free or reuse the connection. */
void on_open(ws_t *ws);    /* the 101 arrived: st is WS_OPEN */
void on_message(ws_t *ws); /* a whole data message: msg_opcode, msg_len, head */
void on_control(ws_t *ws); /* a whole control frame: opcode, ctrl */
void on_end(ws_t *ws, int eof); /* the server closed TCP (eof 1), or the connection failed (0) */

#endif
