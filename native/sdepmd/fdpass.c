/* Moving file descriptors between processes, for the lifecycle of epmd itself:
 *   pidfdOpen(pid), pidfdGetfd(pidfd, fd)      copy another process's fd (root takes over a running C epmd)
 *   sendFds(sock, data, fds), recvFds(sock, maxBytes, maxFds)
 *                                               bytes plus SCM_RIGHTS over a unix stream socket
 *   setInheritable(fd, inheritable), dupFd(fd), execve(path, argv, env)
 *                                               a live upgrade: the same process runs the new code, keeping fds
 * Every function returns a negative errno on failure and throws a TypeError on bad arguments. */
#define _GNU_SOURCE
#include "addon.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <pthread.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

/* The kernel's SCM_MAX_FD: the most fds one SCM_RIGHTS message may carry. */
#define MAX_PASS_FDS 253
/* The most bytes one recvFds call returns, and one sendFds call accepts. */
#define MAX_PASS_BYTES (16 * 1024 * 1024)
/* How long sendFds waits for room in the socket's buffer, in total. */
#define SEND_TIMEOUT_MS 10000
/* Limits on what execve accepts. */
#define MAX_EXEC_STRINGS 4096

static napi_value int_result(napi_env env, int64_t value) {
  napi_value result = NULL;
  if (napi_create_int64(env, value, &result) != napi_ok) return NULL;
  return result;
}

static bool get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv, const char *usage) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return false;
  if (argc != want) {
    napi_throw_type_error(env, NULL, usage);
    return false;
  }
  return true;
}

static napi_value pidfd_open_fn(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int64_t pid;
  if (!get_args(env, info, 1, argv, "pidfdOpen(pid) expects 1 argument")) return NULL;
  if (!sdepmd_get_int(env, argv[0], 1, INT32_MAX, "pid", &pid)) return NULL;
  long fd = syscall(SYS_pidfd_open, (pid_t)pid, 0);
  return int_result(env, fd < 0 ? -errno : fd);
}

static napi_value pidfd_getfd_fn(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int64_t pidfd, target;
  if (!get_args(env, info, 2, argv, "pidfdGetfd(pidfd, fd) expects 2 arguments")) return NULL;
  if (!sdepmd_get_int(env, argv[0], 0, INT32_MAX, "pidfd", &pidfd)) return NULL;
  if (!sdepmd_get_int(env, argv[1], 0, INT32_MAX, "fd", &target)) return NULL;
  /* The new fd is close-on-exec, as pidfd_getfd(2) always makes it. */
  long fd = syscall(SYS_pidfd_getfd, (int)pidfd, (int)target, 0);
  return int_result(env, fd < 0 ? -errno : fd);
}

/* Reads an array of fds (each 0..INT32_MAX, at most `max`) into out; false after throwing. */
static bool get_fd_array(napi_env env, napi_value value, int *out, uint32_t max, uint32_t *count) {
  bool is_array = false;
  if (napi_is_array(env, value, &is_array) != napi_ok) return false;
  if (!is_array) {
    napi_throw_type_error(env, NULL, "fds must be an array");
    return false;
  }
  if (napi_get_array_length(env, value, count) != napi_ok) return false;
  if (*count > max) {
    napi_throw_type_error(env, NULL, "too many fds for one message (at most 253)");
    return false;
  }
  for (uint32_t i = 0; i < *count; i++) {
    napi_value el;
    int64_t fd;
    if (napi_get_element(env, value, i, &el) != napi_ok) return false;
    if (!sdepmd_get_int(env, el, 0, INT32_MAX, "each fd", &fd)) return false;
    out[i] = (int)fd;
  }
  return true;
}

/* Waits until `fd` is ready for `events`, or the deadline; 0, or a negative errno. */
static int wait_ready(int fd, short events, int timeout_ms) {
  struct pollfd p = {.fd = fd, .events = events};
  for (;;) {
    int r = poll(&p, 1, timeout_ms);
    if (r > 0) return 0;
    if (r == 0) return -ETIMEDOUT;
    if (errno != EINTR) return -errno;
  }
}

/* sendFds(sock, data: Buffer, fds: number[]): number of bytes sent (all of data), or -errno.
 * The fds travel with the first byte. Waits (poll) when the socket's buffer is full, at most 10 s in all. */
static napi_value send_fds_fn(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int64_t sock;
  bool is_buffer = false;
  void *data = NULL;
  size_t len = 0;
  uint32_t nfds = 0;
  int fds[MAX_PASS_FDS];
  if (!get_args(env, info, 3, argv, "sendFds(sock, data, fds) expects 3 arguments")) return NULL;
  if (!sdepmd_get_int(env, argv[0], 0, INT32_MAX, "sock", &sock)) return NULL;
  if (napi_is_buffer(env, argv[1], &is_buffer) != napi_ok) return NULL;
  if (!is_buffer) {
    napi_throw_type_error(env, NULL, "data must be a Buffer");
    return NULL;
  }
  if (napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok) return NULL;
  if (len == 0 || len > MAX_PASS_BYTES) {
    napi_throw_type_error(env, NULL, "data must be 1 byte to 16 MiB");
    return NULL;
  }
  if (!get_fd_array(env, argv[2], fds, MAX_PASS_FDS, &nfds)) return NULL;

  size_t sent = 0;
  int waited_ms = 0;
  while (sent < len) {
    struct iovec iov = {.iov_base = (char *)data + sent, .iov_len = len - sent};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    union {
      char buf[CMSG_SPACE(sizeof(int) * MAX_PASS_FDS)];
      struct cmsghdr align;
    } control;
    if (sent == 0 && nfds > 0) {
      memset(&control, 0, sizeof control);
      msg.msg_control = control.buf;
      msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
      struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
      memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    ssize_t n = sendmsg((int)sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && waited_ms < SEND_TIMEOUT_MS) {
      int r = wait_ready((int)sock, POLLOUT, 100);
      if (r < 0 && r != -ETIMEDOUT) return int_result(env, r);
      waited_ms += 100;
      continue;
    }
    return int_result(env, n < 0 ? -errno : -EIO);
  }
  return int_result(env, (int64_t)sent);
}

/* recvFds(sock, maxBytes, maxFds): { data: Buffer, fds: number[] } (data empty at end of stream), or -errno
 * (-EAGAIN: nothing to read yet). Never blocks. Received fds are close-on-exec; fds beyond maxFds, or a
 * truncated control message, are closed and reported as -EMSGSIZE after closing every fd received. */
static napi_value recv_fds_fn(napi_env env, napi_callback_info info) {
  napi_value argv[3], result = NULL, buffer, array;
  int64_t sock, max_bytes, max_fds;
  void *copy;
  char *data = NULL;
  int got[MAX_PASS_FDS];
  uint32_t ngot = 0;
  if (!get_args(env, info, 3, argv, "recvFds(sock, maxBytes, maxFds) expects 3 arguments")) return NULL;
  if (!sdepmd_get_int(env, argv[0], 0, INT32_MAX, "sock", &sock)) return NULL;
  if (!sdepmd_get_int(env, argv[1], 1, MAX_PASS_BYTES, "maxBytes", &max_bytes)) return NULL;
  if (!sdepmd_get_int(env, argv[2], 0, MAX_PASS_FDS, "maxFds", &max_fds)) return NULL;
  if ((data = malloc((size_t)max_bytes)) == NULL) return int_result(env, -ENOMEM);

  union {
    char buf[CMSG_SPACE(sizeof(int) * MAX_PASS_FDS)];
    struct cmsghdr align;
  } control;
  struct iovec iov = {.iov_base = data, .iov_len = (size_t)max_bytes};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf};
  ssize_t n;
  do n = recvmsg((int)sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    int err = -errno;
    free(data);
    return int_result(env, err);
  }
  bool overflow = (msg.msg_flags & MSG_CTRUNC) != 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    int *in = (int *)CMSG_DATA(c);
    for (size_t i = 0; i < k; i++) {
      if (ngot < (uint32_t)max_fds) got[ngot++] = in[i];
      else {
        close(in[i]);
        overflow = true;
      }
    }
  }
  if (overflow) {
    for (uint32_t i = 0; i < ngot; i++) close(got[i]);
    free(data);
    return int_result(env, -EMSGSIZE);
  }
  CHECK(napi_create_object(env, &result));
  CHECK(napi_create_buffer_copy(env, (size_t)n, data, &copy, &buffer));
  CHECK(napi_set_named_property(env, result, "data", buffer));
  CHECK(napi_create_array_with_length(env, ngot, &array));
  for (uint32_t i = 0; i < ngot; i++) {
    napi_value v;
    CHECK(napi_create_int32(env, got[i], &v));
    CHECK(napi_set_element(env, array, i, v));
  }
  CHECK(napi_set_named_property(env, result, "fds", array));
  free(data);
  return result;
fail:
  /* JS never saw these fds: do not leak them. */
  for (uint32_t i = 0; i < ngot; i++) close(got[i]);
  free(data);
  return NULL;
}

/* setInheritable(fd, inheritable): clears FD_CLOEXEC (the fd survives execve) or sets it again. */
static napi_value set_inheritable_fn(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int64_t fd;
  bool inheritable, on;
  if (!get_args(env, info, 2, argv, "setInheritable(fd, inheritable) expects 2 arguments")) return NULL;
  if (!sdepmd_get_int(env, argv[0], 0, INT32_MAX, "fd", &fd)) return NULL;
  if (napi_get_value_bool(env, argv[1], &inheritable) != napi_ok) {
    napi_throw_type_error(env, NULL, "inheritable must be a boolean");
    return NULL;
  }
  on = !inheritable;
  int flags = fcntl((int)fd, F_GETFD);
  if (flags < 0) return int_result(env, -errno);
  flags = on ? (flags | FD_CLOEXEC) : (flags & ~FD_CLOEXEC);
  return int_result(env, fcntl((int)fd, F_SETFD, flags) < 0 ? -errno : 0);
}

static napi_value dup_fd_fn(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int64_t fd;
  if (!get_args(env, info, 1, argv, "dupFd(fd) expects 1 argument")) return NULL;
  if (!sdepmd_get_int(env, argv[0], 0, INT32_MAX, "fd", &fd)) return NULL;
  /* Above the stdio range, close-on-exec like every fd Node opens. */
  int copy = fcntl((int)fd, F_DUPFD_CLOEXEC, 3);
  return int_result(env, copy < 0 ? -errno : copy);
}

/* Frees a NULL-terminated string vector. */
static void free_strings(char **v) {
  if (v == NULL) return;
  for (char **p = v; *p != NULL; p++) free(*p);
  free(v);
}

/* Reads an array of strings (no NUL inside) into a NULL-terminated vector; NULL after throwing. */
static char **get_strings(napi_env env, napi_value value, const char *what) {
  bool is_array = false;
  uint32_t n = 0;
  char **v = NULL;
  char msg[96];
  if (napi_is_array(env, value, &is_array) != napi_ok) return NULL;
  if (!is_array) goto bad;
  if (napi_get_array_length(env, value, &n) != napi_ok) return NULL;
  if (n > MAX_EXEC_STRINGS) goto bad;
  if ((v = calloc(n + 1, sizeof *v)) == NULL) goto bad;
  for (uint32_t i = 0; i < n; i++) {
    napi_value el;
    napi_valuetype type;
    size_t len = 0;
    if (napi_get_element(env, value, i, &el) != napi_ok || napi_typeof(env, el, &type) != napi_ok) goto fail;
    if (type != napi_string) goto bad;
    if (napi_get_value_string_utf8(env, el, NULL, 0, &len) != napi_ok) goto fail;
    if ((v[i] = malloc(len + 1)) == NULL) goto bad;
    if (napi_get_value_string_utf8(env, el, v[i], len + 1, &len) != napi_ok) goto fail;
    if (strlen(v[i]) != len) goto bad;
  }
  return v;
bad:
  snprintf(msg, sizeof msg, "%s must be an array of at most 4096 strings without NUL", what);
  napi_throw_type_error(env, NULL, msg);
fail:
  free_strings(v);
  return NULL;
}

/* execve(path, argv, env): replaces this process's program, keeping its pid and every fd that is not
 * close-on-exec. Returns only on failure, with -errno. Signals are unblocked first: the new program starts with
 * an empty signal mask, as it would from systemd. */
static napi_value execve_fn(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  napi_valuetype type;
  size_t len = 0;
  char *path = NULL, **args = NULL, **envp = NULL;
  napi_value result = NULL;
  if (!get_args(env, info, 3, argv, "execve(path, argv, env) expects 3 arguments")) return NULL;
  CHECK(napi_typeof(env, argv[0], &type));
  if (type != napi_string) THROW("path must be a string");
  CHECK(napi_get_value_string_utf8(env, argv[0], NULL, 0, &len));
  if (len == 0 || len > 4095) THROW("path must be 1..4095 bytes");
  if ((path = malloc(len + 1)) == NULL) THROW("out of memory");
  CHECK(napi_get_value_string_utf8(env, argv[0], path, len + 1, &len));
  if (strlen(path) != len) THROW("path must not contain NUL");
  if ((args = get_strings(env, argv[1], "argv")) == NULL) goto fail;
  if (args[0] == NULL) THROW("argv must not be empty");
  if ((envp = get_strings(env, argv[2], "env")) == NULL) goto fail;
  sigset_t none;
  sigemptyset(&none);
  sigset_t old;
  pthread_sigmask(SIG_SETMASK, &none, &old);
  execve(path, args, envp);
  int err = -errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  result = int_result(env, err);
fail:
  free(path);
  free_strings(args);
  free_strings(envp);
  return result;
}

napi_status sdepmd_init_fdpass(napi_env env, napi_value exports) {
  static const struct {
    const char *name;
    napi_callback fn;
  } fns[] = {
      {"pidfdOpen", pidfd_open_fn}, {"pidfdGetfd", pidfd_getfd_fn}, {"sendFds", send_fds_fn},
      {"recvFds", recv_fds_fn},     {"setInheritable", set_inheritable_fn}, {"dupFd", dup_fd_fn},
      {"execve", execve_fn},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_status status = sdepmd_export(env, exports, fns[i].name, fns[i].fn);
    if (status != napi_ok) return status;
  }
  return napi_ok;
}
