/* notifyWithFds(state: string, fds: number[]): number
 * sd_pid_notify_with_fds(3): a notify message (READY=1, STATUS=…, FDSTORE=1 with fds, …) to systemd.
 * Returns its result: a negative errno on failure, 0 if NOTIFY_SOCKET is unset, > 0 once sent. */
#include "addon.h"
#include <systemd/sd-daemon.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FDS 768   /* systemd's limit of fds in one notify message */
#define MAX_STATE 4095 /* and of the message's text */

static napi_value notify_with_fds(napi_env env, napi_callback_info info) {
  size_t argc = 2, len = 0;
  napi_value argv[2], result = NULL;
  napi_valuetype type;
  bool is_array = false;
  uint32_t n = 0;
  char *state = NULL;
  int fds[MAX_FDS];

  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 2) THROW("notifyWithFds(state, fds) expects 2 arguments");
  CHECK(napi_typeof(env, argv[0], &type));
  if (type != napi_string) THROW("state must be a string");
  CHECK(napi_get_value_string_utf8(env, argv[0], NULL, 0, &len));
  if (len == 0 || len > MAX_STATE) THROW("state must be 1..4095 bytes");
  if ((state = malloc(len + 1)) == NULL) THROW("out of memory");
  CHECK(napi_get_value_string_utf8(env, argv[0], state, len + 1, &len));
  if (strlen(state) != len) THROW("state must not contain NUL");
  CHECK(napi_is_array(env, argv[1], &is_array));
  if (!is_array) THROW("fds must be an array");
  CHECK(napi_get_array_length(env, argv[1], &n));
  if (n > MAX_FDS) THROW("fds must hold at most 768 descriptors");
  for (uint32_t i = 0; i < n; i++) {
    napi_value el;
    int64_t fd;
    CHECK(napi_get_element(env, argv[1], i, &el));
    if (!sdepmd_get_int(env, el, 0, INT32_MAX, "each fd", &fd)) goto fail;
    fds[i] = (int)fd;
  }
  CHECK(napi_create_int32(env, sd_pid_notify_with_fds(0, 0, state, n ? fds : NULL, n), &result));
fail:
  free(state);
  return result;
}

napi_status sdepmd_init_notify(napi_env env, napi_value exports) {
  return sdepmd_export(env, exports, "notifyWithFds", notify_with_fds);
}
