/*
 * loadgen.c - load generator for EPMD-protocol daemons (sdepmd benchmark).
 *
 * Build:  cc -O2 -pthread -o bench/out/loadgen bench/loadgen.c
 *
 * Usage:  loadgen [options] MODE ARGS...
 *   lookup   HOST PORT NAME CONCURRENCY SECONDS   PORT_PLEASE2 on fresh connections
 *   names    HOST PORT CONCURRENCY SECONDS        NAMES_REQ on fresh connections
 *   register HOST PORT CONCURRENCY SECONDS        ALIVE2 (unique name) + close, cycles/s
 *   hold     HOST PORT N PREFIX                   register PREFIX0..N-1, hold until stdin EOF/SIGTERM
 *   sink     PORT [THREADS]                       trivial reference server (ceiling check)
 * Options (before MODE):
 *   -t THREADS   worker threads for lookup/names/register (default min(CONCURRENCY, ncpu))
 *   -w SECS      warm-up seconds, run but not counted (default 0)
 *   -T MS        per-request timeout in ms (default 2000 for load modes, 5000 for hold)
 *   -a OCTET     hold: first source address 127.0.0.OCTET (default 1; +1 every 25000 conns)
 *   -p PORT      hold: the node port announced in ALIVE2 (default 20000 + i % 40000)
 *
 * Load modes print one JSON line:
 *   {"ok":..,"fail":..,"rps":..,"p50_us":..,"p99_us":..,...}
 * hold prints {"held":H,"fail":F,"n":N,...} once every attempt is resolved, then holds.
 * sink prints {"port":P} once listening, and runs until SIGTERM or stdin EOF.
 *
 * Design: each worker thread runs its own epoll loop with CONCURRENCY/THREADS
 * connections outstanding; a finished connection is immediately replaced by a
 * fresh one.  Non-blocking sockets, so one thread per core drives any number of
 * outstanding requests without context-switch overhead.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
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

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define HIST_MAX 2000000 /* 1 us buckets up to 2 s; larger goes in the last bucket */
#define RBUF 65536

enum { M_LOOKUP, M_NAMES, M_REGISTER };

static int g_mode;
static struct sockaddr_in g_dst;
static const char *g_name;
static int g_port;
static int g_conc, g_threads;
static double g_secs, g_warm;
static int g_timeout_ms = -1;
static int g_src_octet = 1;
static int g_node_port = -1;
static int g_rst_close = 0;
static atomic_int g_phase; /* 0 warm-up, 1 measuring, 2 stop */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}
static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

static void die(const char *msg) {
  fprintf(stderr, "loadgen: %s\n", msg);
  exit(2);
}

static int put_u16(unsigned char *p, unsigned v) {
  p[0] = (v >> 8) & 0xff;
  p[1] = v & 0xff;
  return 2;
}

/* ---- request builders -------------------------------------------------- */

static int build_port2(unsigned char *b, const char *name) {
  size_t n = strlen(name);
  put_u16(b, (unsigned)(n + 1));
  b[2] = 'z';
  memcpy(b + 3, name, n);
  return (int)(n + 3);
}
static int build_names(unsigned char *b) {
  put_u16(b, 1);
  b[2] = 'n';
  return 3;
}
static int build_alive2(unsigned char *b, const char *name, unsigned port) {
  size_t n = strlen(name);
  unsigned char *p = b + 2;
  *p++ = 'x';
  p += put_u16(p, port);
  *p++ = 77; /* normal node */
  *p++ = 0;  /* tcp/ipv4 */
  p += put_u16(p, 6);
  p += put_u16(p, 5);
  p += put_u16(p, (unsigned)n);
  memcpy(p, name, n);
  p += n;
  p += put_u16(p, 0);
  int body = (int)(p - (b + 2));
  put_u16(b, (unsigned)body);
  return body + 2;
}

/* ---- reply validation --------------------------------------------------- */

static int valid_port2(const unsigned char *r, int len) {
  if (len < 14 || r[0] != 'w' || r[1] != 0) return 0;
  int nlen = (r[10] << 8) | r[11];
  if (len < 12 + nlen + 2) return 0;
  int elen = (r[12 + nlen] << 8) | r[13 + nlen];
  return len == 12 + nlen + 2 + elen;
}
static int valid_names(const unsigned char *r, int len) {
  if (len < 4) return 0;
  uint32_t p = ((uint32_t)r[0] << 24) | ((uint32_t)r[1] << 16) | ((uint32_t)r[2] << 8) | r[3];
  return p == (uint32_t)g_port;
}
static int valid_alive2(const unsigned char *r, int len) {
  return len >= 6 && r[0] == 'v' && r[1] == 0;
}

/* ---- load worker -------------------------------------------------------- */

typedef struct {
  int fd;
  int64_t t0;
  int len; /* bytes of reply received */
  int done_ok; /* register: reply validated, now closing */
} slot_t;

typedef struct {
  int id;
  int nslots;
  pthread_t th;
  uint64_t ok, fail, bytes;
  uint64_t fail_connect, fail_reply, fail_timeout, fail_io;
  int first_errno;
  uint32_t *hist;
  uint64_t seq;
} worker_t;

static void count_fail(worker_t *w, uint64_t *kind, int err) {
  if (atomic_load(&g_phase) != 1) return;
  w->fail++;
  (*kind)++;
  if (!w->first_errno && err) w->first_errno = err;
}

static void record_ok(worker_t *w, int64_t t0, int bytes) {
  if (atomic_load(&g_phase) != 1) return;
  int64_t d = now_us() - t0;
  if (d < 0) d = 0;
  if (d >= HIST_MAX) d = HIST_MAX - 1;
  w->hist[d]++;
  w->ok++;
  w->bytes += (uint64_t)bytes;
}

static void slot_close(int ep, slot_t *s) {
  (void)ep; /* close() drops the fd from the epoll set: no EPOLL_CTL_DEL needed */
  if (s->fd >= 0) {
    if (g_rst_close) {
      struct linger lg = {1, 0};
      setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(s->fd);
  }
  s->fd = -1;
}

/* start a new request on slot s; returns 0 if started, -1 on immediate failure */
static int slot_start(worker_t *w, int ep, slot_t *s, int idx) {
  unsigned char req[600];
  int rlen;
  char nm[300];
  s->len = 0;
  s->done_ok = 0;
  s->t0 = now_us();
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    count_fail(w, &w->fail_connect, errno);
    return -1;
  }
  if (connect(fd, (struct sockaddr *)&g_dst, sizeof g_dst) < 0 && errno != EINPROGRESS) {
    count_fail(w, &w->fail_connect, errno);
    close(fd);
    return -1;
  }
  s->fd = fd;
  switch (g_mode) {
  case M_LOOKUP: rlen = build_port2(req, g_name); break;
  case M_NAMES: rlen = build_names(req); break;
  default:
    snprintf(nm, sizeof nm, "lg%d_%d_%llu", (int)getpid(), w->id, (unsigned long long)w->seq++);
    rlen = build_alive2(req, nm, 20000 + (unsigned)(w->seq % 40000));
    break;
  }
  /* On loopback the handshake usually completes inside connect(), so try the
   * write right away; fall back to waiting for EPOLLOUT. */
  ssize_t wr = send(fd, req, rlen, MSG_NOSIGNAL);
  struct epoll_event ev = {.data.u32 = (uint32_t)idx};
  if (wr == rlen) {
    ev.events = EPOLLIN | EPOLLRDHUP;
  } else if (wr < 0 && (errno == EAGAIN || errno == ENOTCONN)) {
    ev.events = EPOLLOUT; /* connect still in progress */
  } else {
    count_fail(w, &w->fail_io, wr < 0 ? errno : EIO);
    close(fd);
    s->fd = -1;
    return -1;
  }
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
    count_fail(w, &w->fail_io, errno);
    close(fd);
    s->fd = -1;
    return -1;
  }
  return 0;
}

static void *worker_main(void *arg) {
  worker_t *w = arg;
  int ep = epoll_create1(EPOLL_CLOEXEC);
  slot_t *slots = calloc(w->nslots, sizeof *slots);
  struct epoll_event *evs = calloc(w->nslots + 1, sizeof *evs);
  unsigned char *rbuf = malloc(RBUF);
  int timeout_us = (g_timeout_ms > 0 ? g_timeout_ms : 2000) * 1000;
  int64_t last_sweep = now_us();
  for (int i = 0; i < w->nslots; i++) {
    slots[i].fd = -1;
    slot_start(w, ep, &slots[i], i);
  }
  while (atomic_load(&g_phase) != 2) {
    int n = epoll_wait(ep, evs, w->nslots + 1, 20);
    for (int k = 0; k < n; k++) {
      int i = (int)evs[k].data.u32;
      slot_t *s = &slots[i];
      if (s->fd < 0) continue;
      if (evs[k].events & EPOLLOUT) {
        /* delayed connect completed (or failed): send the request now */
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
          count_fail(w, &w->fail_connect, err);
          slot_close(ep, s);
          continue;
        }
        unsigned char req[600];
        char nm[300];
        int rlen;
        switch (g_mode) {
        case M_LOOKUP: rlen = build_port2(req, g_name); break;
        case M_NAMES: rlen = build_names(req); break;
        default:
          snprintf(nm, sizeof nm, "lg%d_%d_%llu", (int)getpid(), w->id, (unsigned long long)w->seq++);
          rlen = build_alive2(req, nm, 20000 + (unsigned)(w->seq % 40000));
        }
        if (send(s->fd, req, rlen, MSG_NOSIGNAL) != rlen) {
          count_fail(w, &w->fail_io, errno);
          slot_close(ep, s);
          continue;
        }
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
        continue;
      }
      /* readable / hangup / error: drain */
      for (;;) {
        ssize_t r;
        if (g_mode == M_NAMES && s->len >= 4) {
          r = read(s->fd, rbuf + 4, RBUF - 4); /* keep the 4-byte header, discard the rest */
          if (r > 0) { s->len += (int)r; continue; }
        } else {
          r = read(s->fd, rbuf + s->len, RBUF - s->len);
          if (r > 0) {
            s->len += (int)r;
            if (g_mode == M_REGISTER && s->len >= 6) {
              if (valid_alive2(rbuf, s->len)) {
                record_ok(w, s->t0, s->len);
              } else {
                count_fail(w, &w->fail_reply, 0);
              }
              slot_close(ep, s); /* closing unregisters */
              break;
            }
            if (s->len >= RBUF) { count_fail(w, &w->fail_reply, 0); slot_close(ep, s); break; }
            continue;
          }
        }
        if (r == 0) {
          int ok;
          if (g_mode == M_LOOKUP) ok = valid_port2(rbuf, s->len);
          else if (g_mode == M_NAMES) ok = valid_names(rbuf, s->len);
          else ok = 0; /* register: EOF before a full reply */
          if (ok) record_ok(w, s->t0, s->len);
          else count_fail(w, &w->fail_reply, 0);
          slot_close(ep, s);
          break;
        }
        if (errno == EAGAIN || errno == EINTR) break;
        count_fail(w, &w->fail_io, errno);
        slot_close(ep, s);
        break;
      }
    }
    /* timeouts */
    int64_t t = now_us();
    if (t - last_sweep > 50000) {
      last_sweep = t;
      for (int i = 0; i < w->nslots; i++)
        if (slots[i].fd >= 0 && t - slots[i].t0 > timeout_us) {
          count_fail(w, &w->fail_timeout, ETIMEDOUT);
          slot_close(ep, &slots[i]);
        }
    }
    /* refill */
    if (atomic_load(&g_phase) != 2)
      for (int i = 0; i < w->nslots; i++)
        if (slots[i].fd < 0) slot_start(w, ep, &slots[i], i);
  }
  for (int i = 0; i < w->nslots; i++) slot_close(ep, &slots[i]);
  close(ep);
  free(slots);
  free(evs);
  free(rbuf);
  return NULL;
}

static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static int run_load(void) {
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  if (ncpu < 1) ncpu = 1;
  if (g_threads <= 0) g_threads = g_conc < ncpu ? g_conc : (int)ncpu;
  if (g_threads > g_conc) g_threads = g_conc;
  worker_t *ws = calloc(g_threads, sizeof *ws);
  for (int i = 0; i < g_threads; i++) {
    ws[i].id = i;
    ws[i].nslots = g_conc / g_threads + (i < g_conc % g_threads ? 1 : 0);
    ws[i].hist = calloc(HIST_MAX, sizeof(uint32_t));
    if (!ws[i].hist) die("out of memory");
  }
  atomic_store(&g_phase, g_warm > 0 ? 0 : 1);
  for (int i = 0; i < g_threads; i++) pthread_create(&ws[i].th, NULL, worker_main, &ws[i]);
  if (g_warm > 0) {
    struct timespec ts = {(time_t)g_warm, (long)((g_warm - (time_t)g_warm) * 1e9)};
    nanosleep(&ts, NULL);
    atomic_store(&g_phase, 1);
  }
  double t0 = now_s(), c0 = cpu_seconds();
  struct timespec ts = {(time_t)g_secs, (long)((g_secs - (time_t)g_secs) * 1e9)};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
  atomic_store(&g_phase, 2);
  double el = now_s() - t0, cpu = cpu_seconds() - c0;
  for (int i = 0; i < g_threads; i++) pthread_join(ws[i].th, NULL);

  uint64_t ok = 0, fail = 0, bytes = 0, fc = 0, fr = 0, ft = 0, fi = 0;
  int ferr = 0;
  for (int i = 0; i < g_threads; i++) {
    ok += ws[i].ok; fail += ws[i].fail; bytes += ws[i].bytes;
    fc += ws[i].fail_connect; fr += ws[i].fail_reply; ft += ws[i].fail_timeout; fi += ws[i].fail_io;
    if (!ferr) ferr = ws[i].first_errno;
    if (i) for (int b = 0; b < HIST_MAX; b++) ws[0].hist[b] += ws[i].hist[b];
  }
  long p50 = -1, p99 = -1, p999 = -1, pmax = -1;
  double mean = 0;
  if (ok) {
    uint64_t c = 0, n50 = (ok * 50 + 99) / 100, n99 = (ok * 99 + 99) / 100, n999 = (ok * 999 + 999) / 1000;
    for (long b = 0; b < HIST_MAX; b++) {
      uint32_t h = ws[0].hist[b];
      if (!h) continue;
      c += h;
      mean += (double)b * h;
      if (p50 < 0 && c >= n50) p50 = b;
      if (p99 < 0 && c >= n99) p99 = b;
      if (p999 < 0 && c >= n999) p999 = b;
      pmax = b;
    }
    mean /= (double)ok;
  }
  printf("{\"ok\":%llu,\"fail\":%llu,\"rps\":%.1f,\"p50_us\":%ld,\"p99_us\":%ld,\"p999_us\":%ld,"
         "\"max_us\":%ld,\"mean_us\":%.1f,\"secs\":%.3f,\"conc\":%d,\"threads\":%d,\"cpu_pct\":%.1f,"
         "\"bytes_per_reply\":%.1f,\"fail_connect\":%llu,\"fail_reply\":%llu,\"fail_timeout\":%llu,"
         "\"fail_io\":%llu,\"first_error\":\"%s\"}\n",
         (unsigned long long)ok, (unsigned long long)fail, ok / el, p50, p99, p999, pmax, mean, el, g_conc,
         g_threads, 100.0 * cpu / el, ok ? (double)bytes / ok : 0.0, (unsigned long long)fc,
         (unsigned long long)fr, (unsigned long long)ft, (unsigned long long)fi, ferr ? strerror(ferr) : "");
  fflush(stdout);
  return 0;
}

/* ---- hold ----------------------------------------------------------------- */

typedef struct {
  int fd;
  int state; /* 0 unused, 1 pending reply, 2 held, 3 dead */
  int len;
  int64_t t0;
  unsigned char r[8];
} hconn_t;

static int run_hold(int n, const char *prefix) {
  raise_nofile();
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  hconn_t *cs = calloc(n > 0 ? n : 1, sizeof *cs);
  int window = 512, inflight = 0, next = 0, held = 0, fail = 0, lost = 0, since_ok = 0;
  int timeout_us = (g_timeout_ms > 0 ? g_timeout_ms : 5000) * 1000;
  int first_err = 0;
  struct epoll_event *evs = calloc(1024, sizeof *evs);
  double t0 = now_s();
  int stopped = 0; /* stop attempting after a run of failures (daemon at its cap) */
  while (next < n || inflight > 0) {
    while (!stopped && next < n && inflight < window) {
      int i = next++;
      hconn_t *c = &cs[i];
      c->t0 = now_us();
      int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) { fail++; since_ok++; if (!first_err) first_err = errno; c->state = 3; continue; }
      int one = 1;
      setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
      struct sockaddr_in src = {.sin_family = AF_INET};
      int oct = g_src_octet + i / 25000;
      src.sin_addr.s_addr = htonl((127u << 24) | (unsigned)(oct & 0xff));
      /* several loopback source addresses get past the ephemeral-port limit per destination */
      if ((ntohl(g_dst.sin_addr.s_addr) >> 24) == 127)
        (void)bind(fd, (struct sockaddr *)&src, sizeof src);
      if (connect(fd, (struct sockaddr *)&g_dst, sizeof g_dst) < 0 && errno != EINPROGRESS) {
        fail++; since_ok++; if (!first_err) first_err = errno; close(fd); c->state = 3; continue;
      }
      c->fd = fd;
      c->state = 1;
      c->len = 0;
      inflight++;
      struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)i};
      epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    if (stopped && inflight == 0) break;
    int k = epoll_wait(ep, evs, 1024, 50);
    for (int e = 0; e < k; e++) {
      int i = (int)evs[e].data.u32;
      hconn_t *c = &cs[i];
      if (c->state != 1) continue;
      if (evs[e].events & EPOLLOUT) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        unsigned char req[600];
        char nm[300];
        snprintf(nm, sizeof nm, "%s%d", prefix, i);
        int rlen = build_alive2(req, nm, g_node_port > 0 ? (unsigned)g_node_port : 20000 + (unsigned)(i % 40000));
        if (err || send(c->fd, req, rlen, MSG_NOSIGNAL) != rlen) {
          if (!first_err) first_err = err ? err : errno;
          goto failed;
        }
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        continue;
      }
      {
        ssize_t r = read(c->fd, c->r + c->len, sizeof c->r - c->len);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (r > 0) {
          c->len += (int)r;
          if (c->len < 6) continue;
          if (valid_alive2(c->r, c->len)) {
            c->state = 2;
            held++;
            inflight--;
            since_ok = 0;
            /* keep watching for the daemon dropping us; only RDHUP/HUP/ERR */
            struct epoll_event ev = {.events = EPOLLRDHUP, .data.u32 = (uint32_t)i};
            epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
            continue;
          }
        }
        if (r < 0 && !first_err) first_err = errno;
      }
    failed:
      epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
      close(c->fd);
      c->fd = -1;
      c->state = 3;
      inflight--;
      fail++;
      since_ok++;
    }
    int64_t t = now_us();
    /* timeout sweep over pending ones (cheap enough: only run when something is pending) */
    if (inflight > 0) {
      static int64_t last = 0;
      if (t - last > 100000) {
        last = t;
        for (int i = 0; i < next; i++)
          if (cs[i].state == 1 && t - cs[i].t0 > timeout_us) {
            epoll_ctl(ep, EPOLL_CTL_DEL, cs[i].fd, NULL);
            close(cs[i].fd);
            cs[i].fd = -1;
            cs[i].state = 3;
            inflight--;
            fail++;
            since_ok++;
            if (!first_err) first_err = ETIMEDOUT;
          }
      }
    }
    if (since_ok >= 64 && fail >= 64) stopped = 1;
  }
  double el = now_s() - t0;
  printf("{\"held\":%d,\"fail\":%d,\"n\":%d,\"attempted\":%d,\"secs\":%.3f,\"nofile\":%llu,\"first_error\":\"%s\"}\n",
         held, fail, n, next, el, (unsigned long long)rl.rlim_cur, first_err ? strerror(first_err) : "");
  fflush(stdout);

  /* hold: wait for stdin EOF (or SIGTERM, default action) while noting dropped registrations */
  struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = 0xffffffffu};
  int watch_stdin = epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev) == 0;
  for (;;) {
    int k = epoll_wait(ep, evs, 1024, -1);
    if (k < 0 && errno == EINTR) continue;
    for (int e = 0; e < k; e++) {
      uint32_t i = evs[e].data.u32;
      if (i == 0xffffffffu) {
        char b[256];
        ssize_t r = read(0, b, sizeof b);
        if (r <= 0) {
          if (lost) fprintf(stderr, "loadgen hold: %d registrations were dropped by the daemon\n", lost);
          return 0;
        }
        continue;
      }
      if (cs[i].state == 2) {
        epoll_ctl(ep, EPOLL_CTL_DEL, cs[i].fd, NULL);
        cs[i].state = 3;
        lost++;
      }
    }
    (void)watch_stdin;
  }
}

/* ---- sink: trivial reference server ---------------------------------------- */

static int g_sink_port;

static void *sink_main(void *arg) {
  int lfd = (int)(intptr_t)arg;
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  static const unsigned char wrep[] = {'w', 0, 0x4e, 0x20, 77, 0, 0, 6, 0, 5, 0, 4, 's', 'i', 'n', 'k', 0, 0};
  unsigned char vrep[6] = {'v', 0, 0, 0, 0, 1};
  static const char line[] = "name sink at port 20000\n";
  unsigned char nrep[64] = {(unsigned char)(g_sink_port >> 24), (unsigned char)(g_sink_port >> 16),
                            (unsigned char)(g_sink_port >> 8), (unsigned char)g_sink_port};
  memcpy(nrep + 4, line, sizeof line - 1);
  int nlen = 4 + (int)(sizeof line - 1);
  struct epoll_event evs[256];
  unsigned char buf[4096];
  for (;;) {
    int n = epoll_wait(ep, evs, 256, -1);
    for (int k = 0; k < n; k++) {
      int fd = evs[k].data.fd;
      if (fd == lfd) {
        for (;;) {
          int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) break;
          struct epoll_event ce = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = c};
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
        }
        continue;
      }
      ssize_t r = read(fd, buf, sizeof buf);
      if (r < 0 && errno == EAGAIN) continue;
      if (r >= 3) {
        /* assume the whole request arrived in one segment (it does for these tiny requests) */
        if (buf[2] == 'z') { (void)!write(fd, wrep, sizeof wrep); }
        else if (buf[2] == 'n') { (void)!write(fd, nrep, nlen); }
        else if (buf[2] == 'x') { (void)!write(fd, vrep, sizeof vrep); continue; /* hold open */ }
      }
      close(fd); /* closing removes it from epoll */
    }
  }
  return NULL;
}

static int run_sink(int port, int threads) {
  raise_nofile();
  if (threads < 1) threads = 1;
  int lfds[64];
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int i = 0; i < threads && i < 64; i++) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) die("sink: bind failed");
    if (listen(fd, 4096) < 0) die("sink: listen failed");
    if (i == 0) {
      socklen_t al = sizeof a;
      getsockname(fd, (struct sockaddr *)&a, &al);
      g_sink_port = ntohs(a.sin_port);
    }
    lfds[i] = fd;
  }
  for (int i = 0; i < threads; i++) {
    pthread_t th;
    pthread_create(&th, NULL, sink_main, (void *)(intptr_t)lfds[i]);
  }
  printf("{\"port\":%d,\"threads\":%d}\n", g_sink_port, threads);
  fflush(stdout);
  char b[256];
  for (;;) {
    ssize_t r = read(0, b, sizeof b);
    if (r == 0) return 0;            /* stdin closed */
    if (r < 0 && errno != EINTR) pause(); /* stdin unusable: wait for a signal */
  }
}

/* ---- main ------------------------------------------------------------------ */

static void usage(void) {
  fprintf(stderr,
          "usage: loadgen [-t THREADS] [-w WARMUP_S] [-T TIMEOUT_MS] [-a SRC_OCTET] [-p NODE_PORT] MODE ARGS\n"
          "  lookup   HOST PORT NAME CONCURRENCY SECONDS\n"
          "  names    HOST PORT CONCURRENCY SECONDS\n"
          "  register HOST PORT CONCURRENCY SECONDS\n"
          "  hold     HOST PORT N PREFIX\n"
          "  sink     PORT [THREADS]\n");
  exit(2);
}

static void set_dst(const char *host, const char *port) {
  struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res;
  if (getaddrinfo(host, port, &hints, &res) != 0) die("cannot resolve host (IPv4 only)");
  memcpy(&g_dst, res->ai_addr, sizeof g_dst);
  freeaddrinfo(res);
  g_port = atoi(port);
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  int opt;
  while ((opt = getopt(argc, argv, "+t:w:T:a:p:R")) != -1) {
    switch (opt) {
    case 't': g_threads = atoi(optarg); break;
    case 'w': g_warm = atof(optarg); break;
    case 'T': g_timeout_ms = atoi(optarg); break;
    case 'a': g_src_octet = atoi(optarg); break;
    case 'p': g_node_port = atoi(optarg); break;
    case 'R': g_rst_close = 1; break;
    default: usage();
    }
  }
  argc -= optind;
  argv += optind;
  if (argc < 1) usage();
  const char *mode = argv[0];
  raise_nofile();
  if (!strcmp(mode, "lookup")) {
    if (argc != 6) usage();
    set_dst(argv[1], argv[2]);
    g_mode = M_LOOKUP;
    g_name = argv[3];
    if (strlen(g_name) > 255) die("name too long");
    g_conc = atoi(argv[4]);
    g_secs = atof(argv[5]);
  } else if (!strcmp(mode, "names") || !strcmp(mode, "register")) {
    if (argc != 5) usage();
    set_dst(argv[1], argv[2]);
    g_mode = !strcmp(mode, "names") ? M_NAMES : M_REGISTER;
    g_conc = atoi(argv[3]);
    g_secs = atof(argv[4]);
  } else if (!strcmp(mode, "hold")) {
    if (argc != 5) usage();
    set_dst(argv[1], argv[2]);
    return run_hold(atoi(argv[3]), argv[4]);
  } else if (!strcmp(mode, "sink")) {
    if (argc < 2 || argc > 3) usage();
    return run_sink(atoi(argv[1]), argc == 3 ? atoi(argv[2]) : 1);
  } else {
    usage();
  }
  if (g_conc < 1 || g_secs <= 0) usage();
  return run_load();
}
