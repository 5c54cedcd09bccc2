/* A listening socket's backlog, which Node cannot read.
 *
 * Node calls listen() again on every listening socket it is given (a socket-activation fd, or one kept across a
 * live upgrade), and with a backlog of 511 unless told otherwise: that would undo the socket unit's Backlog=. With
 * this call the daemon reads the backlog the socket has, and listens again with that.
 *
 * listenBacklog(fd: number): number
 *   The backlog of a listening TCP socket (Linux reports it in TCP_INFO's tcpi_sacked for listeners, as `ss -ltn`
 *   shows it in Send-Q), or a negative errno: -EINVAL when the socket is TCP but not listening, -EOPNOTSUPP or
 *   -ENOTSOCK when it is not a TCP socket, -EBADF when the fd is not open. */
#include "addon.h"
#include <errno.h>
#include <stddef.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

/* The backlog of a listening TCP socket, or a negative errno. */
static int64_t backlog_of(int fd) {
  struct tcp_info ti;
  socklen_t len = sizeof ti;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0) return -errno;
  if (len < (socklen_t)(offsetof(struct tcp_info, tcpi_sacked) + sizeof ti.tcpi_sacked)) return -EOPNOTSUPP;
  if (ti.tcpi_state != TCP_LISTEN) return -EINVAL;
  return (int64_t)ti.tcpi_sacked;
}

static napi_value listen_backlog(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result = NULL;
  int64_t fd;

  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 1) THROW("listenBacklog(fd) expects 1 argument");
  if (!sdepmd_get_int(env, argv[0], 0, INT32_MAX, "fd", &fd)) goto fail;
  CHECK(napi_create_int64(env, backlog_of((int)fd), &result));
fail:
  return result;
}

napi_status sdepmd_init_socket(napi_env env, napi_value exports) {
  return sdepmd_export(env, exports, "listenBacklog", listen_backlog);
}
