/* The native I/O engine: every listening socket and every connection of the EPMD server, in one epoll set that
 * Node's loop watches through one uv_poll_t. The protocol stays in JavaScript; this file only moves bytes.
 *
 *   accept4 until EAGAIN ─► optimistic read ─► 2-byte length framing ─► ONE call of onRequest(id, status, n)
 *                                                                     ─► JS returns the reply: write, then close
 *                                                                        or JS calls send(id, reply, KEEP):
 *                                                                        write, then watch for EOF/data/error
 *
 * The request (length prefix included) is in the shared Buffer JS passed to engineOpen, at offset 0, for the
 * duration of the call. A status other than 0 flags a bad frame (zero length, too long, bytes after the request)
 * for JS to decide and log. Partial reads and short writes are buffered here, per connection, and only then.
 *
 * Connection ids are serial * 2^24 + fd: an id names one connection for its life, never a later one that reuses
 * the fd. Timeouts: JS asks for the facts (engineWatched) and applies its rules (src/policy/timeouts.ts); the
 * request budget, sdepmd's own rule, is checked here on each read with the budget JS set. Nothing here may crash the
 * process: errors are negative errno values or events, and a JS exception goes to process 'uncaughtException'. */
#define _GNU_SOURCE /* accept4 */
#include "addon.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define INBUF_SIZE 3060                /* the C epmd's input buffer: length + 2 must stay below it */
#define MAX_BODY (INBUF_SIZE - 2 - 1)
#define SHARED_MIN INBUF_SIZE
#define MAX_EVENTS 256
#define MAX_LISTENERS 64
#define ACCEPT_BATCH 1024              /* accept until EAGAIN, but yield to the loop after this many */
#define FD_BITS 24
#define FD_LIMIT (1 << FD_BITS)
#define SERIAL_MASK ((1u << 29) - 1)   /* ids stay below 2^53, exact as JS numbers */
#define LISTENER_TAG (1ULL << 63)
#define PEER_BUCKETS 1024
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 1000
/* What a connection is watched for while its request comes in, and as a registration: the same set, so that a
 * registration whose ALIVE2 arrived in pieces needs no epoll_ctl once answered. */
#define WATCH_READ (EPOLLIN | EPOLLRDHUP)

enum { ST_READING, ST_DELAYED, ST_AWAIT, ST_WRITING, ST_KEPT };
enum { AFTER_CLOSE = 0, AFTER_KEEP = 1, AFTER_MORE = 2 };
enum { CLOSE_PLAIN = 0, CLOSE_HANGUP = 1, CLOSE_RELEASE = 2 };
/* onRequest statuses */
enum { REQ_COMPLETE = 0, REQ_ZERO_LENGTH = 1, REQ_TOO_LONG = 2, REQ_EXCESS = 3, REQ_BUDGET = 4 };
/* onEvent kinds (mirrored in src/engine/native-engine.ts) */
enum {
  EV_EOF = 1, EV_DATA = 2, EV_ERROR = 3, EV_ACCEPTED = 7, EV_LIMIT_TOTAL = 8, EV_LIMIT_PEER = 9, EV_ACCEPT_PAUSED = 10,
  EV_ACCEPT_ERROR = 11
};

typedef struct peer {
  struct peer *next;
  uint8_t addr[16];
  uint32_t count;
} peer;

typedef struct conn {
  int fd;
  uint32_t serial;
  uint8_t state, after, in_epoll;
  uint8_t shared; /* the fd may have a duplicate outside the engine: handed out (engineFd) or adopted */
  uint32_t events;
  uint16_t inlen;
  uint8_t *in;        /* a partial request, only while one is pending */
  const uint8_t *out; /* the unsent rest of a reply, only after a short write: in the JS Buffer that out_ref holds */
  napi_ref out_ref;
  uint32_t outlen, outoff;
  int64_t accepted_ms, last_ms; /* the engine's clock (monotonic ms): accept, and the last read or reply */
  peer *peer;
  union {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
  } addr; /* the peer, as accept() reported it: still known after the peer resets the connection */
} conn;

typedef struct engine {
  napi_env env;
  uv_poll_t poll;
  uv_timer_t backoff;
  int epfd;
  int refs; /* the JS handle, plus each open uv handle */
  bool dead, accepting, paused;
  int depth;
  napi_ref on_request, on_event, shared_ref, resource;
  napi_async_context actx;
  uint8_t *shared;
  size_t shared_len;
  conn **conns;
  int conns_cap;
  uint32_t serial;
  int listeners[MAX_LISTENERS];
  int nlisteners;
  int backoff_ms;
  double accepted, open, kept;
  int64_t max_conns, max_per_peer, budget_ms;
  bool delay_accept;
  peer *peers[PEER_BUCKETS];
} engine;

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double conn_id(const conn *c) { return (double)(((uint64_t)c->serial << FD_BITS) | (uint64_t)c->fd); }

static conn *find(engine *e, double id) {
  if (!(id >= 0) || id > 9007199254740991.0) return NULL;
  uint64_t v = (uint64_t)id;
  int fd = (int)(v & (FD_LIMIT - 1));
  if (fd >= e->conns_cap) return NULL;
  conn *c = e->conns[fd];
  return c && c->serial == (uint32_t)(v >> FD_BITS) ? c : NULL;
}

/* ---------------------------------------------------------------- per-peer counts (only with the limit on) */

static bool peer_key(const conn *c, uint8_t key[16], bool *loopback) {
  memset(key, 0, 16);
  if (c->addr.sa.sa_family == AF_INET) {
    key[10] = key[11] = 0xff;
    memcpy(key + 12, &c->addr.in4.sin_addr, 4);
  } else if (c->addr.sa.sa_family == AF_INET6) {
    memcpy(key, &c->addr.in6.sin6_addr, 16);
  } else {
    return false;
  }
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  static const uint8_t v6loop[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  *loopback = (memcmp(key, mapped, 12) == 0 && key[12] == 127) || memcmp(key, v6loop, 16) == 0;
  return true;
}

static unsigned peer_hash(const uint8_t key[16]) {
  uint32_t h = 2166136261u;
  for (int i = 0; i < 16; i++) h = (h ^ key[i]) * 16777619u;
  return h % PEER_BUCKETS;
}

static peer *peer_get(engine *e, const uint8_t key[16], bool create) {
  unsigned b = peer_hash(key);
  for (peer *p = e->peers[b]; p; p = p->next)
    if (memcmp(p->addr, key, 16) == 0) return p;
  if (!create) return NULL;
  peer *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  memcpy(p->addr, key, 16);
  p->next = e->peers[b];
  e->peers[b] = p;
  return p;
}

/* Drops one connection from a peer's count, and the peer once it has none. */
static void peer_release(engine *e, peer *p) {
  if (!p || (p->count > 0 && --p->count > 0)) return;
  peer **link = &e->peers[peer_hash(p->addr)];
  while (*link && *link != p) link = &(*link)->next;
  if (*link) *link = p->next;
  free(p);
}

/* An address as text ('' for none): a peer's as accept() reported it, or with `fd` >= 0 the socket's own. */
static napi_value address_string(napi_env env, const struct sockaddr *known, int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  char text[INET6_ADDRSTRLEN] = "";
  napi_value out;
  const struct sockaddr *sa = known;
  if (fd >= 0) sa = getsockname(fd, (struct sockaddr *)&ss, &len) == 0 ? (struct sockaddr *)&ss : NULL;
  if (sa && sa->sa_family == AF_INET) inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, text, sizeof text);
  if (sa && sa->sa_family == AF_INET6) inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, text, sizeof text);
  if (napi_create_string_latin1(env, text, NAPI_AUTO_LENGTH, &out) != napi_ok) return NULL;
  return out;
}

/* ---------------------------------------------------------------- calling JS */

/* Calls a JS callback; an exception goes to process 'uncaughtException' (the daemon logs it and carries on). */
static napi_value call_js(engine *e, napi_ref fn, size_t argc, napi_value *argv) {
  napi_env env = e->env;
  napi_value f, recv, result = NULL;
  if (napi_get_reference_value(env, fn, &f) != napi_ok || napi_get_undefined(env, &recv) != napi_ok) return NULL;
  napi_status s = napi_call_function(env, recv, f, argc, argv, &result);
  if (s == napi_pending_exception) {
    napi_value err;
    if (napi_get_and_clear_last_exception(env, &err) == napi_ok) napi_fatal_exception(env, err);
    return NULL;
  }
  return s == napi_ok ? result : NULL;
}

static void emit(engine *e, double id, int kind, double detail, napi_value extra) {
  napi_env env = e->env;
  napi_handle_scope scope;
  napi_value argv[4];
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  if (napi_create_double(env, id, &argv[0]) == napi_ok && napi_create_int32(env, kind, &argv[1]) == napi_ok &&
      napi_create_double(env, detail, &argv[2]) == napi_ok &&
      (extra ? (argv[3] = extra, napi_ok) : napi_get_undefined(env, &argv[3])) == napi_ok)
    call_js(e, e->on_event, 4, argv);
  napi_close_handle_scope(env, scope);
}

/* ---------------------------------------------------------------- connections */

/* Stops watching a connection that stays open (JS owes it an answer). */
static void unwatch(engine *e, conn *c) {
  if (!c->in_epoll) return;
  epoll_ctl(e->epfd, EPOLL_CTL_DEL, c->fd, NULL);
  c->in_epoll = 0;
  c->events = 0;
}

static bool watch(engine *e, conn *c, uint32_t events) {
  if (c->in_epoll && c->events == events) return true;
  struct epoll_event ev = {.events = events, .data.u64 = ((uint64_t)c->serial << FD_BITS) | (uint64_t)c->fd};
  if (epoll_ctl(e->epfd, c->in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev) != 0) return false;
  c->in_epoll = 1;
  c->events = events;
  return true;
}

/* Ends a connection: CLOSE_HANGUP shuts it down first (systemd's fd store may hold a duplicate, and close()
 * alone would then not end it); CLOSE_RELEASE forgets it without closing and returns the fd. */
static int drop(engine *e, conn *c, int how) {
  int fd = c->fd;
  /* Deregister explicitly when the fd stays open (released) or may have a duplicate elsewhere (the fd store):
   * close() would then leave the description in the epoll set. Otherwise close() removes it, one syscall less per
   * registration. (A child between fork and exec also holds a copy for a moment; the events it could cause carry
   * the old connection's serial, and find() ignores them.) */
  if (c->in_epoll && (c->shared || how == CLOSE_RELEASE)) epoll_ctl(e->epfd, EPOLL_CTL_DEL, fd, NULL);
  if (how == CLOSE_HANGUP) shutdown(fd, SHUT_RDWR);
  if (how != CLOSE_RELEASE) close(fd);
  if (c->state == ST_KEPT) e->kept--;
  e->open--;
  peer_release(e, c->peer);
  free(c->in);
  if (c->out_ref) napi_delete_reference(e->env, c->out_ref);
  e->conns[fd] = NULL;
  free(c);
  return how == CLOSE_RELEASE ? fd : 0;
}

static conn *track(engine *e, int fd, int state) {
  if (fd >= FD_LIMIT) return NULL;
  if (fd >= e->conns_cap) {
    int cap = e->conns_cap ? e->conns_cap : 1024;
    while (cap <= fd) cap *= 2;
    conn **grown = realloc(e->conns, sizeof *grown * (size_t)cap);
    if (!grown) return NULL;
    memset(grown + e->conns_cap, 0, sizeof *grown * (size_t)(cap - e->conns_cap));
    e->conns = grown;
    e->conns_cap = cap;
  }
  conn *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->fd = fd;
  c->serial = e->serial = (e->serial + 1) & SERIAL_MASK;
  c->state = (uint8_t)state;
  c->accepted_ms = c->last_ms = now_ms();
  e->conns[fd] = c;
  e->open++;
  if (state == ST_KEPT) e->kept++;
  return c;
}

static void keep(engine *e, conn *c) {
  c->state = ST_KEPT;
  e->kept++;
  if (!watch(e, c, WATCH_READ)) {
    double id = conn_id(c);
    int err = errno;
    drop(e, c, CLOSE_HANGUP);
    emit(e, id, EV_ERROR, err, NULL);
  }
}

/* Writes a reply; returns 1 when all of it went out, 0 when the rest waits for the socket, -errno on failure (the
 * connection is then closed). `after` says what follows: close, or keep the connection as a registration. */
static int write_reply(engine *e, conn *c, napi_value buffer, const uint8_t *data, size_t len, int after) {
  ssize_t n;
  do n = send(c->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
    int err = errno;
    drop(e, c, CLOSE_PLAIN);
    return -err;
  }
  if ((size_t)(n < 0 ? 0 : n) == len) {
    if (after == AFTER_KEEP) keep(e, c);
    else if (after == AFTER_CLOSE) drop(e, c, CLOSE_PLAIN);
    return 1;
  }
  size_t sent = n < 0 ? 0 : (size_t)n;
  c->last_ms = now_ms(); /* a slow reader is idle from the reply on */
  /* No copy: the reply stays in its Buffer (a NAMES reply is shared by every reader), which the ref keeps alive. */
  if (napi_create_reference(e->env, buffer, 1, &c->out_ref) != napi_ok) {
    drop(e, c, CLOSE_PLAIN);
    return -ENOMEM;
  }
  c->out = data;
  c->outlen = (uint32_t)len;
  c->outoff = (uint32_t)sent;
  c->after = (uint8_t)after;
  c->state = ST_WRITING;
  if (!watch(e, c, EPOLLOUT)) {
    int err = errno;
    drop(e, c, CLOSE_PLAIN);
    return -err;
  }
  return 0;
}

/* A connection failed while a reply was going out: closed, and JS told (a registration may hang on it). */
static void fail(engine *e, conn *c, int err) {
  double id = conn_id(c);
  drop(e, c, CLOSE_PLAIN);
  emit(e, id, EV_ERROR, err, NULL);
}

static void flush(engine *e, conn *c) {
  ssize_t n;
  do n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL | MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK) fail(e, c, errno);
    return;
  }
  c->outoff += (uint32_t)n;
  if (c->outoff < c->outlen) return;
  napi_delete_reference(e->env, c->out_ref);
  c->out_ref = NULL;
  c->out = NULL;
  c->outlen = c->outoff = 0;
  if (c->after == AFTER_KEEP) keep(e, c);
  else if (c->after == AFTER_MORE) {
    c->state = ST_AWAIT; /* JS has more to write */
    unwatch(e, c);
  } else {
    drop(e, c, CLOSE_PLAIN);
  }
}

/* Hands the request in the shared buffer to JS and acts on its answer: a Buffer is written and the connection
 * closed; undefined means JS answers later (send/close); anything else closes the connection. */
static void deliver(engine *e, conn *c, int status, size_t n) {
  napi_env env = e->env;
  napi_handle_scope scope;
  napi_value argv[3], result;
  double id = conn_id(c);
  c->state = ST_AWAIT;
  if (napi_open_handle_scope(env, &scope) != napi_ok) {
    drop(e, c, CLOSE_PLAIN);
    return;
  }
  result = NULL;
  if (napi_create_double(env, id, &argv[0]) == napi_ok && napi_create_int32(env, status, &argv[1]) == napi_ok &&
      napi_create_uint32(env, (uint32_t)n, &argv[2]) == napi_ok)
    result = call_js(e, e->on_request, 3, argv);
  c = find(e, id); /* JS may have answered, closed or released it meanwhile */
  if (c && c->state == ST_AWAIT) {
    napi_valuetype type = napi_null;
    bool is_buffer = false;
    void *data;
    size_t len;
    if (result) napi_typeof(env, result, &type);
    if (type == napi_object && napi_is_buffer(env, result, &is_buffer) == napi_ok && is_buffer &&
        napi_get_buffer_info(env, result, &data, &len) == napi_ok)
      write_reply(e, c, result, data, len, AFTER_CLOSE);
    else if (type != napi_undefined)
      drop(e, c, CLOSE_PLAIN);
  }
  napi_close_handle_scope(env, scope);
}

/* Reads what the peer sent; once the 2-byte length says the request is whole (or bad), hands it to JS. */
static void read_request(engine *e, conn *c) {
  uint8_t *buf = c->in ? c->in : e->shared;
  size_t have = c->in ? c->inlen : 0;
  ssize_t n;
  do n = recv(c->fd, buf + have, INBUF_SIZE - have, MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    if (!watch(e, c, WATCH_READ)) drop(e, c, CLOSE_PLAIN);
    return;
  }
  if (n < 0) {
    double id = conn_id(c);
    int err = errno;
    drop(e, c, CLOSE_PLAIN);
    emit(e, id, EV_ERROR, err, NULL);
    return;
  }
  if (n == 0) {
    drop(e, c, CLOSE_PLAIN); /* EOF before a whole request: nothing to answer */
    return;
  }
  have += (size_t)n;
  c->last_ms = now_ms();
  int status = -1;
  if (have >= 2) {
    size_t length = ((size_t)buf[0] << 8) | buf[1];
    if (length == 0) status = REQ_ZERO_LENGTH;
    else if (length > MAX_BODY) status = REQ_TOO_LONG;
    else if (have > length + 2) status = REQ_EXCESS;
    else if (have == length + 2) status = REQ_COMPLETE;
  }
  if (status < 0 && e->budget_ms > 0 && c->last_ms - c->accepted_ms > e->budget_ms) status = REQ_BUDGET;
  if (status < 0) { /* incomplete: keep it, and wait for more */
    if (!c->in) {
      if (!(c->in = malloc(INBUF_SIZE))) {
        drop(e, c, CLOSE_PLAIN);
        return;
      }
      memcpy(c->in, buf, have);
    }
    c->inlen = (uint16_t)have;
    if (!watch(e, c, WATCH_READ)) drop(e, c, CLOSE_PLAIN);
    return;
  }
  if (c->in) {
    memcpy(e->shared, c->in, have);
    free(c->in);
    c->in = NULL;
    c->inlen = 0;
  }
  /* A connection that had to wait for its request stays in the epoll set, watched as a registration would be:
   * if JS keeps it, nothing changes there, and if JS closes it, close() takes it out. Should the peer send more or
   * hang up while JS still owes the answer, on_poll stops watching it (unwatch), as if it had never been added. */
  deliver(e, c, status, have);
}

/* A registration's connection (or a refused ALIVE2 left open) became readable: EOF, data or an error ends it. */
static void kept_event(engine *e, conn *c, uint32_t events) {
  uint8_t scratch[256];
  double id = conn_id(c);
  ssize_t n;
  do n = recv(c->fd, scratch, sizeof scratch, MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    if (!(events & (EPOLLERR | EPOLLHUP))) return;
    n = -1;
    errno = ECONNRESET;
  }
  int kind = n == 0 ? EV_EOF : n > 0 ? EV_DATA : EV_ERROR;
  double detail = n > 0 ? (double)n : n == 0 ? 0 : (double)errno;
  /* A shutdown matters only when a duplicate (the fd store's) would keep the connection open after close(). */
  drop(e, c, c->shared ? CLOSE_HANGUP : CLOSE_PLAIN);
  emit(e, id, kind, detail, NULL);
}

static void serve(engine *e, conn *c) {
  if (e->delay_accept) {
    c->state = ST_DELAYED;
    emit(e, conn_id(c), EV_ACCEPTED, 0, NULL);
  } else {
    read_request(e, c);
  }
}

/* ---------------------------------------------------------------- accepting */

static void set_listening(engine *e, bool on) {
  for (int i = 0; i < e->nlisteners; i++) {
    if (e->listeners[i] < 0) continue;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = LISTENER_TAG | (uint64_t)i};
    epoll_ctl(e->epfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, e->listeners[i], &ev);
  }
}

static void on_backoff(uv_timer_t *t) {
  engine *e = t->data;
  e->paused = false;
  if (e->accepting && !e->dead) set_listening(e, true);
}

/* Out of fds (or memory): stop accepting for a while, say so, and let connections wait in the backlog. */
static void back_off(engine *e, int err) {
  if (e->paused) return;
  e->paused = true;
  set_listening(e, false);
  e->backoff_ms = e->backoff_ms ? (e->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : e->backoff_ms * 2) : BACKOFF_MIN_MS;
  uv_timer_start(&e->backoff, on_backoff, (uint64_t)e->backoff_ms, 0);
  emit(e, -1, EV_ACCEPT_PAUSED, err, NULL);
}

static void refuse(engine *e, int fd, const struct sockaddr *addr, int kind) {
  napi_handle_scope scope;
  if (napi_open_handle_scope(e->env, &scope) == napi_ok) {
    napi_value who = address_string(e->env, addr, -1);
    close(fd);
    emit(e, -1, kind, 0, who);
    napi_close_handle_scope(e->env, scope);
  } else {
    close(fd);
  }
}

static void admit(engine *e, int fd, const struct sockaddr *addr) {
  e->accepted++;
  if (e->max_conns > 0 && e->open >= (double)e->max_conns) return refuse(e, fd, addr, EV_LIMIT_TOTAL);
  conn *c = track(e, fd, ST_READING);
  if (!c) {
    close(fd);
    return;
  }
  memcpy(&c->addr, addr, addr->sa_family == AF_INET ? sizeof c->addr.in4 : sizeof c->addr.in6);
  if (e->max_per_peer > 0) {
    uint8_t key[16];
    bool loopback = true;
    if (peer_key(c, key, &loopback) && !loopback) {
      peer *p = peer_get(e, key, true);
      if (p && p->count >= (uint64_t)e->max_per_peer) {
        drop(e, c, CLOSE_RELEASE);
        return refuse(e, fd, addr, EV_LIMIT_PEER);
      }
      if (p) p->count++;
      c->peer = p;
    }
  }
  serve(e, c);
}

static void accept_on(engine *e, int lfd) {
  for (int i = 0; i < ACCEPT_BATCH && !e->dead && e->accepting && !e->paused; i++) {
    struct sockaddr_in6 addr; /* room for either family */
    socklen_t len = sizeof addr;
    memset(&addr, 0, sizeof addr);
    int fd = accept4(lfd, (struct sockaddr *)&addr, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      e->backoff_ms = 0;
      admit(e, fd, (struct sockaddr *)&addr);
      continue;
    }
    switch (errno) {
      case EAGAIN:
#if EAGAIN != EWOULDBLOCK
      case EWOULDBLOCK:
#endif
        return;
      case EINTR:
      case ECONNABORTED:
      case EPROTO:
        continue;
      case EMFILE:
      case ENFILE:
      case ENOBUFS:
      case ENOMEM:
        back_off(e, errno);
        return;
      default:
        emit(e, -1, EV_ACCEPT_ERROR, errno, NULL);
        back_off(e, errno);
        return;
    }
  }
}

/* ---------------------------------------------------------------- the loop */

static void engine_unref(engine *e);

static void on_poll(uv_poll_t *handle, int status, int events) {
  (void)status;
  (void)events;
  engine *e = handle->data;
  napi_env env = e->env;
  struct epoll_event evs[MAX_EVENTS];
  napi_handle_scope scope;
  napi_callback_scope cscope;
  napi_value resource;
  int n = epoll_wait(e->epfd, evs, MAX_EVENTS, 0);
  if (n <= 0) return;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  bool scoped = napi_get_reference_value(env, e->resource, &resource) == napi_ok &&
                napi_open_callback_scope(env, resource, e->actx, &cscope) == napi_ok;
  e->depth++;
  for (int i = 0; i < n && !e->dead; i++) {
    uint64_t tag = evs[i].data.u64;
    if (tag & LISTENER_TAG) {
      int index = (int)(tag & 0xffff);
      if (index < e->nlisteners && e->listeners[index] >= 0) accept_on(e, e->listeners[index]);
      continue;
    }
    int fd = (int)(tag & (FD_LIMIT - 1));
    conn *c = fd < e->conns_cap ? e->conns[fd] : NULL;
    if (!c || c->serial != (uint32_t)(tag >> FD_BITS)) continue; /* closed earlier in this batch */
    switch (c->state) {
      case ST_READING:
        read_request(e, c);
        break;
      case ST_WRITING:
        if (evs[i].events & (EPOLLERR | EPOLLHUP)) fail(e, c, ECONNRESET);
        else flush(e, c);
        break;
      case ST_KEPT:
        kept_event(e, c, evs[i].events);
        break;
      case ST_AWAIT: /* still watched from its read: nothing to do until JS answers */
        unwatch(e, c);
        break;
      default:
        break;
    }
  }
  e->depth--;
  if (scoped) napi_close_callback_scope(env, cscope); /* runs process.nextTick callbacks and microtasks */
  napi_close_handle_scope(env, scope);
}

/* ---------------------------------------------------------------- teardown */

static void free_engine(engine *e) {
  for (int i = 0; i < PEER_BUCKETS; i++) {
    while (e->peers[i]) {
      peer *p = e->peers[i];
      e->peers[i] = p->next;
      free(p);
    }
  }
  free(e->conns);
  free(e);
}

static void engine_unref(engine *e) {
  if (--e->refs == 0) free_engine(e);
}

static void on_handle_closed(uv_handle_t *h) { engine_unref(h->data); }

/* Closes every connection and listener (or leaves them to whoever released them) and stops watching. */
static void shut(engine *e) {
  if (e->dead) return;
  e->dead = true;
  for (int fd = 0; fd < e->conns_cap; fd++)
    if (e->conns[fd]) drop(e, e->conns[fd], CLOSE_PLAIN);
  for (int i = 0; i < e->nlisteners; i++)
    if (e->listeners[i] >= 0) close(e->listeners[i]);
  e->nlisteners = 0;
  uv_poll_stop(&e->poll);
  uv_timer_stop(&e->backoff);
  uv_close((uv_handle_t *)&e->poll, on_handle_closed);
  uv_close((uv_handle_t *)&e->backoff, on_handle_closed);
  close(e->epfd);
  napi_env env = e->env;
  napi_delete_reference(env, e->on_request);
  napi_delete_reference(env, e->on_event);
  napi_delete_reference(env, e->shared_ref);
  napi_delete_reference(env, e->resource);
  napi_async_destroy(env, e->actx);
}

static void finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  engine *e = data;
  shut(e);
  engine_unref(e);
}

/* ---------------------------------------------------------------- the JS API */

#define ARGS(n)                                                      \
  size_t argc = n;                                                   \
  napi_value argv[n], result = NULL;                                 \
  engine *e = NULL;                                                  \
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));       \
  if (argc < n) THROW("engine: missing arguments");                  \
  if (!(e = get_engine(env, argv[0]))) goto fail;

static engine *get_engine(napi_env env, napi_value v) {
  napi_valuetype type;
  void *data = NULL;
  if (napi_typeof(env, v, &type) != napi_ok || type != napi_external || napi_get_value_external(env, v, &data) != napi_ok ||
      !data) {
    napi_throw_type_error(env, NULL, "not an engine");
    return NULL;
  }
  engine *e = data;
  if (e->dead) {
    napi_throw_type_error(env, NULL, "the engine is closed");
    return NULL;
  }
  return e;
}

static napi_value number(napi_env env, double v) {
  napi_value out;
  return napi_create_double(env, v, &out) == napi_ok ? out : NULL;
}

static bool get_id(napi_env env, napi_value v, double *id) {
  napi_valuetype type;
  if (napi_typeof(env, v, &type) == napi_ok && type == napi_number && napi_get_value_double(env, v, id) == napi_ok) return true;
  napi_throw_type_error(env, NULL, "a connection id must be a number");
  return false;
}

/* The connection that argument `v` names, in *c (NULL when it is gone); false, with a TypeError thrown, when `v` is
 * not an id. */
static bool get_conn(napi_env env, engine *e, napi_value v, conn **c) {
  double id;
  if (!get_id(env, v, &id)) return false;
  *c = find(e, id);
  return true;
}

static bool get_bool(napi_env env, napi_value obj, const char *name) {
  napi_value v;
  bool b = false;
  if (napi_get_named_property(env, obj, name, &v) == napi_ok) napi_get_value_bool(env, v, &b);
  return b;
}

static int64_t get_count(napi_env env, napi_value obj, const char *name) {
  napi_value v;
  int64_t n = 0;
  if (napi_get_named_property(env, obj, name, &v) == napi_ok) napi_get_value_int64(env, v, &n);
  return n < 0 ? 0 : n;
}

/* engineOpen(onRequest, onEvent, shared: Buffer, options: {maxConnections, maxConnectionsPerPeer, delayAccept}) */
static napi_value engine_open(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], result = NULL, name;
  napi_valuetype t0, t1, t3;
  bool is_buffer = false;
  void *shared = NULL;
  size_t shared_len = 0;
  uv_loop_t *loop = NULL;
  engine *e = NULL;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4) THROW("engineOpen(onRequest, onEvent, shared, options) expects 4 arguments");
  CHECK(napi_typeof(env, argv[0], &t0));
  CHECK(napi_typeof(env, argv[1], &t1));
  CHECK(napi_typeof(env, argv[3], &t3));
  if (t0 != napi_function || t1 != napi_function) THROW("onRequest and onEvent must be functions");
  if (t3 != napi_object) THROW("options must be an object");
  CHECK(napi_is_buffer(env, argv[2], &is_buffer));
  if (!is_buffer) THROW("shared must be a Buffer");
  CHECK(napi_get_buffer_info(env, argv[2], &shared, &shared_len));
  if (shared_len < SHARED_MIN) THROW("shared must hold at least 3060 bytes");
  CHECK(napi_get_uv_event_loop(env, &loop));
  if (!(e = calloc(1, sizeof *e))) THROW("out of memory");
  e->env = env;
  e->shared = shared;
  e->shared_len = shared_len;
  e->accepting = true;
  e->max_conns = get_count(env, argv[3], "maxConnections");
  e->max_per_peer = get_count(env, argv[3], "maxConnectionsPerPeer");
  e->delay_accept = get_bool(env, argv[3], "delayAccept");
  e->budget_ms = get_count(env, argv[3], "requestBudgetMs");
  if ((e->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
    free(e);
    THROW("epoll_create1 failed");
  }
  if (uv_poll_init(loop, &e->poll, e->epfd) != 0 || uv_timer_init(loop, &e->backoff) != 0) {
    /* uv_poll_init cannot fail for an epoll fd; if it ever does, leak the handle rather than risk a crash */
    close(e->epfd);
    THROW("cannot watch the epoll set from the event loop");
  }
  e->poll.data = e->backoff.data = e;
  e->refs = 3;
  CHECK(napi_create_reference(env, argv[0], 1, &e->on_request));
  CHECK(napi_create_reference(env, argv[1], 1, &e->on_event));
  CHECK(napi_create_reference(env, argv[2], 1, &e->shared_ref));
  CHECK(napi_create_reference(env, argv[3], 1, &e->resource));
  CHECK(napi_create_string_utf8(env, "sdepmd.engine", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_async_init(env, argv[3], name, &e->actx));
  uv_poll_start(&e->poll, UV_READABLE, on_poll);
  CHECK(napi_create_external(env, e, finalize, NULL, &result));
fail:
  return result;
}

static napi_value add_listener(napi_env env, engine *e, int fd) {
  int index = -1;
  for (int i = 0; i < e->nlisteners; i++)
    if (e->listeners[i] < 0) index = i;
  if (index < 0) {
    if (e->nlisteners >= MAX_LISTENERS) {
      close(fd);
      return number(env, -EMFILE);
    }
    index = e->nlisteners++;
  }
  e->listeners[index] = fd;
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = LISTENER_TAG | (uint64_t)index};
  if (e->accepting && !e->paused && epoll_ctl(e->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
    int err = errno;
    e->listeners[index] = -1;
    close(fd);
    return number(env, -err);
  }
  return number(env, index);
}

/* engineListen(engine, host, port, backlog, v6only): binds and listens; returns a listener id, or -errno. */
static napi_value engine_listen(napi_env env, napi_callback_info info) {
  ARGS(5);
  char host[INET6_ADDRSTRLEN + 1];
  size_t len;
  int64_t port, backlog;
  bool v6only = false;
  struct sockaddr_storage ss;
  socklen_t sslen;
  memset(&ss, 0, sizeof ss);
  if (napi_get_value_string_utf8(env, argv[1], host, sizeof host, &len) != napi_ok) THROW("host must be a string");
  if (!sdepmd_get_int(env, argv[2], 0, 65535, "port", &port)) goto fail;
  if (!sdepmd_get_int(env, argv[3], 1, 65535, "backlog", &backlog)) goto fail;
  napi_get_value_bool(env, argv[4], &v6only);
  struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    sslen = sizeof *a4;
  } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)port);
    sslen = sizeof *a6;
  } else {
    THROW("host must be an IPv4 or IPv6 address");
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return number(env, -errno);
  int one = 1, v6 = v6only ? 1 : 0;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (ss.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6, sizeof v6);
  if (bind(fd, (struct sockaddr *)&ss, sslen) != 0 || listen(fd, (int)backlog) != 0) {
    int err = errno;
    close(fd);
    return number(env, -err);
  }
  result = add_listener(env, e, fd);
fail:
  return result;
}

/* Undoes take_fd when the engine cannot use the fd after all: closes the duplicate it made (the caller's fd is
 * the caller's to close). Returns -err. */
static int give_back(int own, bool dup_it, int err) {
  if (dup_it) close(own);
  return -err;
}

/* Checks that `fd` is a stream socket and makes it (or, with `dup`, a duplicate) non-blocking for the engine.
 * Returns the fd to use, or -errno. */
static int take_fd(int fd, bool dup_it) {
  int type = 0;
  socklen_t len = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) return -errno;
  if (type != SOCK_STREAM) return -ENOTSOCK;
  int own = dup_it ? fcntl(fd, F_DUPFD_CLOEXEC, 3) : fd;
  if (own < 0) return -errno;
  int flags = fcntl(own, F_GETFL);
  if (own >= FD_LIMIT || flags < 0 || fcntl(own, F_SETFL, flags | O_NONBLOCK) != 0)
    return give_back(own, dup_it, own >= FD_LIMIT ? EMFILE : errno);
  return own;
}

/* engineAdoptListener(engine, fd, backlog, dup): serves a listening socket passed in (systemd, a live upgrade).
 * A socket that already listens keeps its backlog (systemd's Backlog=); listen() is called only on one that does
 * not. With `dup`, the engine works on a duplicate and the caller keeps its fd. Returns a listener id or -errno. */
static napi_value engine_adopt_listener(napi_env env, napi_callback_info info) {
  ARGS(4);
  int64_t fd, backlog;
  bool dup_it = false;
  int listening = 0;
  socklen_t len = sizeof listening;
  if (!sdepmd_get_int(env, argv[1], 0, FD_LIMIT - 1, "fd", &fd)) goto fail;
  if (!sdepmd_get_int(env, argv[2], 1, 65535, "backlog", &backlog)) goto fail;
  napi_get_value_bool(env, argv[3], &dup_it);
  int own = take_fd((int)fd, dup_it);
  if (own < 0) return number(env, own);
  if (getsockopt(own, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || (!listening && listen(own, (int)backlog) != 0))
    return number(env, give_back(own, dup_it, errno));
  result = add_listener(env, e, own);
fail:
  return result;
}

/* engineListenerInfo(engine, id): [fd, address, port], or null. */
static napi_value engine_listener_info(napi_env env, napi_callback_info info) {
  ARGS(2);
  int64_t id;
  napi_value fd, address, port;
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (!sdepmd_get_int(env, argv[1], 0, MAX_LISTENERS - 1, "listener id", &id)) goto fail;
  if (id >= e->nlisteners || e->listeners[id] < 0 || getsockname(e->listeners[id], (struct sockaddr *)&ss, &len) != 0) {
    CHECK(napi_get_null(env, &result));
    return result;
  }
  int p = ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
          : ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) : 0;
  CHECK(napi_create_array_with_length(env, 3, &result));
  CHECK(napi_create_int32(env, e->listeners[id], &fd));
  if (!(address = address_string(env, NULL, e->listeners[id]))) goto fail;
  CHECK(napi_create_int32(env, p, &port));
  CHECK(napi_set_element(env, result, 0, fd));
  CHECK(napi_set_element(env, result, 1, address));
  CHECK(napi_set_element(env, result, 2, port));
fail:
  return result;
}

/* engineCloseListener(engine, id, release): closes it, or with `release` forgets it and returns its fd. */
static napi_value engine_close_listener(napi_env env, napi_callback_info info) {
  ARGS(3);
  int64_t id;
  bool release = false;
  if (!sdepmd_get_int(env, argv[1], 0, MAX_LISTENERS - 1, "listener id", &id)) goto fail;
  napi_get_value_bool(env, argv[2], &release);
  if (id >= e->nlisteners || e->listeners[id] < 0) return number(env, -EBADF);
  int fd = e->listeners[id];
  e->listeners[id] = -1;
  epoll_ctl(e->epfd, EPOLL_CTL_DEL, fd, NULL);
  if (!release) close(fd);
  result = number(env, release ? fd : 0);
fail:
  return result;
}

/* engineAccepting(engine, on): stops or resumes accepting; connections wait in the kernel's backlog meanwhile. */
static napi_value engine_accepting(napi_env env, napi_callback_info info) {
  ARGS(2);
  bool on = false;
  CHECK(napi_get_value_bool(env, argv[1], &on));
  if (on != e->accepting) {
    e->accepting = on;
    if (!e->paused) set_listening(e, on);
  }
  CHECK(napi_get_undefined(env, &result));
fail:
  return result;
}

/* engineSend(engine, id, reply, after): writes (part of) a reply to a connection waiting for one; `after` says what
 * follows: 0 close, 1 keep it as a registration, 2 more parts to come. 1: written; 0: the rest goes out when the
 * peer reads; -errno: failed (and closed); -ENOTCONN: no such connection (it was closed meanwhile); -EBUSY: the
 * previous part is still going out. */
static napi_value engine_send(napi_env env, napi_callback_info info) {
  ARGS(4);
  conn *c;
  void *data;
  size_t len;
  int64_t after;
  bool is_buffer = false;
  if (!get_conn(env, e, argv[1], &c)) goto fail;
  CHECK(napi_is_buffer(env, argv[2], &is_buffer));
  if (!is_buffer) THROW("reply must be a Buffer");
  CHECK(napi_get_buffer_info(env, argv[2], &data, &len));
  if (!sdepmd_get_int(env, argv[3], AFTER_CLOSE, AFTER_MORE, "after", &after)) goto fail;
  if (!c) return number(env, -ENOTCONN);
  if (c->state != ST_AWAIT) return number(env, c->state == ST_WRITING ? -EBUSY : -ENOTCONN);
  result = number(env, write_reply(e, c, argv[2], data, len, (int)after));
fail:
  return result;
}

/* engineClose(engine, id, how): 0 closes, 1 hangs up (shutdown first), 2 releases: returns the fd, no longer
 * watched or closed by the engine. -ENOTCONN when there is no such connection. */
static napi_value engine_close(napi_env env, napi_callback_info info) {
  ARGS(3);
  conn *c;
  int64_t how;
  if (!get_conn(env, e, argv[1], &c)) goto fail;
  if (!sdepmd_get_int(env, argv[2], CLOSE_PLAIN, CLOSE_RELEASE, "how", &how)) goto fail;
  if (!c) return number(env, -ENOTCONN);
  result = number(env, drop(e, c, (int)how));
fail:
  return result;
}

/* engineResume(engine, id): serves a connection held back by delayAccept. */
static napi_value engine_resume(napi_env env, napi_callback_info info) {
  ARGS(2);
  conn *c;
  if (!get_conn(env, e, argv[1], &c)) goto fail;
  if (c && c->state == ST_DELAYED) {
    c->state = ST_READING;
    c->accepted_ms = c->last_ms = now_ms();
    read_request(e, c);
  }
  CHECK(napi_get_undefined(env, &result));
fail:
  return result;
}

/* engineAdopt(engine, fd, kept, dup): takes over a connected socket: with `kept`, a registration's connection
 * (watched for EOF, data or an error); otherwise a fresh connection, read at once. Returns its id or -errno. */
static napi_value engine_adopt(napi_env env, napi_callback_info info) {
  ARGS(4);
  int64_t fd;
  bool kept = false, dup_it = false;
  if (!sdepmd_get_int(env, argv[1], 0, FD_LIMIT - 1, "fd", &fd)) goto fail;
  CHECK(napi_get_value_bool(env, argv[2], &kept));
  CHECK(napi_get_value_bool(env, argv[3], &dup_it));
  int own = take_fd((int)fd, dup_it);
  if (own < 0) return number(env, own);
  if (own < e->conns_cap && e->conns[own]) return number(env, give_back(own, dup_it, EEXIST));
  conn *c = track(e, own, kept ? ST_KEPT : ST_READING);
  if (!c) return number(env, give_back(own, dup_it, ENOMEM));
  c->shared = 1;
  socklen_t alen = sizeof c->addr;
  if (getpeername(own, &c->addr.sa, &alen) != 0) memset(&c->addr, 0, sizeof c->addr);
  if (e->max_per_peer > 0) {
    uint8_t key[16];
    bool loopback = true;
    if (peer_key(c, key, &loopback) && !loopback && (c->peer = peer_get(e, key, true))) c->peer->count++;
  }
  double id = conn_id(c);
  if (kept) {
    if (!watch(e, c, WATCH_READ)) {
      int err = errno;
      drop(e, c, dup_it ? CLOSE_PLAIN : CLOSE_RELEASE);
      return number(env, -err);
    }
  } else {
    e->accepted++;
    serve(e, c);
  }
  result = number(env, id);
fail:
  return result;
}

/* enginePeer(engine, id, local): the peer's (or with `local`, our own) address as text; '' when unknown. */
static napi_value engine_peer(napi_env env, napi_callback_info info) {
  ARGS(3);
  conn *c;
  bool local = false;
  if (!get_conn(env, e, argv[1], &c)) goto fail;
  napi_get_value_bool(env, argv[2], &local);
  if (!c) CHECK(napi_create_string_latin1(env, "", 0, &result));
  else result = address_string(env, &c->addr.sa, local ? c->fd : -1);
fail:
  return result;
}

/* engineFd(engine, id): the connection's fd (for the fd store and DUMP), or -1. */
static napi_value engine_fd(napi_env env, napi_callback_info info) {
  ARGS(2);
  conn *c;
  if (!get_conn(env, e, argv[1], &c)) goto fail;
  if (c) c->shared = 1;
  result = number(env, c ? c->fd : -1);
fail:
  return result;
}

/* engineWatched(engine): what the timeout rules (src/policy/timeouts.ts) need, for JS to apply them: a
 * Float64Array [now, then id, phase, lastActivity, bytes for each connection they apply to], where phase is 0 for
 * a connection still sending its request (bytes: received so far) and 1 for an answered one whose peer has not
 * read the whole reply (bytes: unsent). Times are the engine's clock, in ms. Connections whose reply JS still
 * owes, and registrations, are never listed: they cannot time out. */
static napi_value engine_watched(napi_env env, napi_callback_info info) {
  ARGS(1);
  napi_value buffer;
  double *out = NULL;
  size_t n = 0, at = 1;
  for (int fd = 0; fd < e->conns_cap; fd++) {
    conn *c = e->conns[fd];
    if (c && (c->state == ST_READING || (c->state == ST_WRITING && c->after == AFTER_CLOSE))) n++;
  }
  CHECK(napi_create_arraybuffer(env, (1 + 4 * n) * sizeof(double), (void **)&out, &buffer));
  out[0] = (double)now_ms();
  for (int fd = 0; fd < e->conns_cap && at < 1 + 4 * n; fd++) {
    conn *c = e->conns[fd];
    if (!c) continue;
    bool reading = c->state == ST_READING, draining = c->state == ST_WRITING && c->after == AFTER_CLOSE;
    if (!reading && !draining) continue;
    out[at++] = conn_id(c);
    out[at++] = draining;
    out[at++] = (double)c->last_ms;
    out[at++] = reading ? c->inlen : c->outlen - c->outoff;
  }
  CHECK(napi_create_typedarray(env, napi_float64_array, 1 + 4 * n, buffer, 0, &result));
fail:
  return result;
}

/* enginePending(engine, id): copies the partial request received so far into the shared buffer; its length. */
static napi_value engine_pending(napi_env env, napi_callback_info info) {
  ARGS(2);
  conn *c;
  if (!get_conn(env, e, argv[1], &c)) goto fail;
  size_t n = c && c->in ? c->inlen : 0;
  if (n) memcpy(e->shared, c->in, n);
  result = number(env, (double)n);
fail:
  return result;
}

/* engineCounters(engine): [accepted, open, kept, busy] where busy = open connections that are not kept. */
static napi_value engine_counters(napi_env env, napi_callback_info info) {
  ARGS(1);
  double values[4] = {e->accepted, e->open, e->kept, e->open - e->kept};
  CHECK(napi_create_array_with_length(env, 4, &result));
  for (uint32_t i = 0; i < 4; i++) {
    napi_value v = number(env, values[i]);
    if (!v) goto fail;
    CHECK(napi_set_element(env, result, i, v));
  }
fail:
  return result;
}

/* engineDestroy(engine): closes every connection and listener still held, and stops. */
static napi_value engine_destroy(napi_env env, napi_callback_info info) {
  ARGS(1);
  shut(e);
  CHECK(napi_get_undefined(env, &result));
fail:
  return result;
}

napi_status sdepmd_init_engine(napi_env env, napi_value exports) {
  static const struct {
    const char *name;
    napi_callback fn;
  } fns[] = {
      {"engineOpen", engine_open},
      {"engineListen", engine_listen},
      {"engineAdoptListener", engine_adopt_listener},
      {"engineListenerInfo", engine_listener_info},
      {"engineCloseListener", engine_close_listener},
      {"engineAccepting", engine_accepting},
      {"engineSend", engine_send},
      {"engineClose", engine_close},
      {"engineResume", engine_resume},
      {"engineAdopt", engine_adopt},
      {"enginePeer", engine_peer},
      {"engineFd", engine_fd},
      {"engineWatched", engine_watched},
      {"enginePending", engine_pending},
      {"engineCounters", engine_counters},
      {"engineDestroy", engine_destroy},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_status s = sdepmd_export(env, exports, fns[i].name, fns[i].fn);
    if (s != napi_ok) return s;
  }
  return napi_ok;
}
