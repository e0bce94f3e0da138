/* ws: what both load generators share (see ws.h). */
#define _GNU_SOURCE
#include "ws.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* --- time, histograms, CPU --- */

uint64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void die(const char *what) {
  printf("{\"error\":\"%s: %s\"}\n", what, strerror(errno));
  fflush(stdout);
  exit(1);
}

void hist_add(hist_t *h, uint64_t v) {
  if (v < HIST_US)
    h->us[v]++;
  else if (v / 1000 < HIST_MS)
    h->ms[v / 1000]++;
  else
    h->ms[HIST_MS - 1]++;
  h->n++;
}

double hist_mean(const hist_t *h) {
  if (h->n == 0) return -1;
  double sum = 0;
  for (int i = 0; i < HIST_US; i++) sum += (double)h->us[i] * i;
  for (int i = 0; i < HIST_MS; i++) sum += (double)h->ms[i] * i * 1000.0;
  return sum / (double)h->n;
}

double hist_pct(const hist_t *h, double p) {
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

unsigned long raise_fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  return (unsigned long)rl.rlim_cur;
}

int parse_ints(const char *list, int *out, int max) {
  char *s = strdup(list), *save = NULL;
  int n = 0;
  for (char *t = strtok_r(s, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save))
    out[n++] = atoi(t);
  free(s);
  return n;
}

double cpu_self(void) {
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

double cpu_pids(const int *pids, int npids) {
  double t = 0;
  for (int i = 0; i < npids; i++) t += cpu_pid(pids[i]);
  return t;
}

double cpu_machine(void) {
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

/* --- connections --- */

int ws_epfd;
static uint8_t g_mask[4];
static const char KEY[] = "dGhlIHNhbXBsZSBub25jZQ==";

void ws_init(void) {
  srand((unsigned)now_us() ^ (unsigned)getpid());
  for (int i = 0; i < 4; i++) g_mask[i] = (uint8_t)(rand() & 0xff);
  ws_epfd = epoll_create1(EPOLL_CLOEXEC);
  if (ws_epfd < 0) die("epoll_create1");
}

int ws_connect(ws_t *ws) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)ws->port)};
  inet_pton(AF_INET, ws->host, &a.sin_addr);
  ws->fd = fd;
  ws->st = WS_CONNECTING;
  ws->fh_len = 0;
  ws->fh_need = 2;
  ws->hlen = 0;
  ws->woff = ws->wlen = 0;
  ws->want_out = 1;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = ws};
  if (epoll_ctl(ws_epfd, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
  return connect(fd, (struct sockaddr *)&a, sizeof a) == 0 || errno == EINPROGRESS;
}

void ws_free(ws_t *ws) {
  if (ws->fd >= 0) {
    epoll_ctl(ws_epfd, EPOLL_CTL_DEL, ws->fd, NULL);
    close(ws->fd);
  }
  ws->fd = -1;
  ws->st = WS_FREE;
}

static void reserve(ws_t *ws, size_t n) {
  if (ws->wlen + n <= ws->wcap) return;
  if (ws->woff > 0) {
    memmove(ws->wbuf, ws->wbuf + ws->woff, ws->wlen - ws->woff);
    ws->wlen -= ws->woff;
    ws->woff = 0;
    if (ws->wlen + n <= ws->wcap) return;
  }
  size_t cap = ws->wcap ? ws->wcap : 4096;
  while (cap < ws->wlen + n) cap *= 2;
  ws->wbuf = realloc(ws->wbuf, cap);
  if (!ws->wbuf) die("realloc");
  ws->wcap = cap;
}

void ws_append(ws_t *ws, const void *p, size_t n) {
  reserve(ws, n);
  memcpy(ws->wbuf + ws->wlen, p, n);
  ws->wlen += n;
}

void ws_frame(ws_t *ws, int opcode, const uint8_t *payload, size_t len) {
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
  reserve(ws, hl + len);
  memcpy(ws->wbuf + ws->wlen, h, hl);
  ws->wlen += hl;
  for (size_t i = 0; i < len; i++) ws->wbuf[ws->wlen + i] = payload[i] ^ g_mask[i & 3];
  ws->wlen += len;
}

static void want_out(ws_t *ws, int on) {
  if (ws->want_out == on) return;
  struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = ws};
  epoll_ctl(ws_epfd, EPOLL_CTL_MOD, ws->fd, &ev);
  ws->want_out = on;
}

int ws_flush(ws_t *ws) {
  while (ws->woff < ws->wlen) {
    ssize_t n = write(ws->fd, ws->wbuf + ws->woff, ws->wlen - ws->woff);
    if (n < 0) {
      if (errno == EAGAIN) break;
      if (errno == EINTR) continue;
      return 0;
    }
    ws->woff += (size_t)n;
  }
  if (ws->woff == ws->wlen) ws->woff = ws->wlen = 0;
  want_out(ws, ws->woff < ws->wlen);
  return 1;
}

/* Feeds received bytes to the frame parser, which calls on_message and on_control. 0 on a
   protocol error. */
static int parse(ws_t *ws, const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (ws->fh_need > 0) {
      while (ws->fh_need > 0 && i < n) {
        ws->fh[ws->fh_len++] = p[i++];
        ws->fh_need--;
        if (ws->fh_len == 2) {
          int l7 = ws->fh[1] & 0x7f, masked = ws->fh[1] >> 7;
          ws->fh_need = (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + (masked ? 4 : 0);
        }
      }
      if (ws->fh_need > 0) break;
      ws->fin = ws->fh[0] >> 7;
      ws->opcode = ws->fh[0] & 0x0f;
      int l7 = ws->fh[1] & 0x7f;
      if (l7 == 126)
        ws->left = ((uint64_t)ws->fh[2] << 8) | ws->fh[3];
      else if (l7 == 127) {
        ws->left = 0;
        for (int k = 2; k < 10; k++) ws->left = (ws->left << 8) | ws->fh[k];
      } else
        ws->left = (uint64_t)l7;
      if (ws->opcode >= 8 && ws->left > 125) return 0;
      ws->ctrl_len = 0;
      if (ws->opcode == 1 || ws->opcode == 2) {
        ws->msg_opcode = ws->opcode;
        ws->msg_len = 0;
        ws->head_len = 0;
      }
    }
    size_t take = (size_t)((uint64_t)(n - i) < ws->left ? (uint64_t)(n - i) : ws->left);
    if (ws->opcode >= 8) {
      memcpy(ws->ctrl + ws->ctrl_len, p + i, take);
      ws->ctrl_len += (int)take;
    } else {
      ws->msg_len += take;
      for (size_t k = 0; k < take && ws->head_len < (int)sizeof ws->head; k++)
        ws->head[ws->head_len++] = p[i + k];
    }
    i += take;
    ws->left -= take;
    if (ws->left > 0) break;
    /* A whole frame is in. */
    if (ws->opcode >= 8)
      on_control(ws);
    else if (ws->fin)
      on_message(ws);
    ws->fh_len = 0;
    ws->fh_need = 2;
  }
  return 1;
}

void ws_on_readable(ws_t *ws) {
  static uint8_t buf[256 * 1024];
  for (int round = 0; round < 4; round++) {
    ssize_t n = read(ws->fd, buf, sizeof buf);
    if (n == 0) {
      on_end(ws, 1);
      return;
    }
    if (n < 0) {
      if (errno == EAGAIN) break;
      if (errno == EINTR) continue;
      on_end(ws, 0);
      return;
    }
    const uint8_t *p = buf;
    size_t len = (size_t)n;
    if (ws->st == WS_HANDSHAKE) {
      size_t room = sizeof ws->hbuf - 1 - ws->hlen;
      size_t take = len < room ? len : room;
      memcpy(ws->hbuf + ws->hlen, p, take);
      ws->hlen += take;
      ws->hbuf[ws->hlen] = 0;
      char *end = strstr(ws->hbuf, "\r\n\r\n");
      if (!end && ws->hlen < sizeof ws->hbuf - 1) continue;
      if (!end || strncmp(ws->hbuf, "HTTP/1.1 101", 12) != 0) {
        on_end(ws, 0);
        return;
      }
      size_t extra = ws->hlen - (size_t)(end + 4 - ws->hbuf); /* frame bytes that came with the 101 */
      size_t consumed = take - extra;
      p += consumed;
      len -= consumed;
      ws->st = WS_OPEN;
      on_open(ws);
    }
    if (len > 0 && !parse(ws, p, len)) {
      on_end(ws, 0);
      return;
    }
    if ((size_t)n < sizeof buf) break;
  }
  if (ws->fd >= 0 && !ws_flush(ws)) on_end(ws, 0);
}

void ws_on_writable(ws_t *ws) {
  if (ws->st == WS_CONNECTING) {
    int err = 0;
    socklen_t l = sizeof err;
    getsockopt(ws->fd, SOL_SOCKET, SO_ERROR, &err, &l);
    if (err) {
      on_end(ws, 0);
      return;
    }
    char req[640];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                     ws->path, ws->host, ws->port, KEY, ws->protocol ? "Sec-WebSocket-Protocol: " : "",
                     ws->protocol ? ws->protocol : "", ws->protocol ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof req) {
      on_end(ws, 0);
      return;
    }
    ws_append(ws, req, (size_t)n);
    ws->st = WS_HANDSHAKE;
  }
  if (!ws_flush(ws)) on_end(ws, 0);
}
