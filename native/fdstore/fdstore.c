/* notifyWithFds(state: string, fds: number[]): number
 * Thin N-API wrapper over sd_pid_notify_with_fds(3). Returns its result:
 * negative errno on failure, 0 if NOTIFY_SOCKET is unset, >0 on success. */
#define NAPI_VERSION 8
#include <node_api.h>
#include <systemd/sd-daemon.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FDS 768 /* systemd's per-message limit (NOTES.md §3) */

#define CHECK(call) do { if ((call) != napi_ok) goto fail; } while (0)
#define THROW(msg) do { napi_throw_type_error(env, NULL, msg); goto fail; } while (0)

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
  if (len == 0 || len >= 4096) THROW("state must be 1..4095 bytes");
  if ((state = malloc(len + 1)) == NULL) THROW("out of memory");
  CHECK(napi_get_value_string_utf8(env, argv[0], state, len + 1, &len));
  if (strlen(state) != len) THROW("state must not contain NUL");
  CHECK(napi_is_array(env, argv[1], &is_array));
  if (!is_array) THROW("fds must be an array");
  CHECK(napi_get_array_length(env, argv[1], &n));
  if (n > MAX_FDS) THROW("fds must hold at most 768 descriptors");
  for (uint32_t i = 0; i < n; i++) {
    napi_value el;
    double d;
    CHECK(napi_get_element(env, argv[1], i, &el));
    CHECK(napi_typeof(env, el, &type));
    if (type != napi_number) THROW("fds must contain only numbers");
    CHECK(napi_get_value_double(env, el, &d));
    if (!(d >= 0 && d <= 2147483647.0) || d != (double)(int)d)
      THROW("fds must contain non-negative integers");
    fds[i] = (int)d;
  }
  CHECK(napi_create_int32(env, sd_pid_notify_with_fds(0, 0, state, n ? fds : NULL, n), &result));
fail:
  free(state);
  return result;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "notifyWithFds", NAPI_AUTO_LENGTH, notify_with_fds, NULL, &fn) != napi_ok ||
      napi_set_named_property(env, exports, "notifyWithFds", fn) != napi_ok)
    return NULL;
  return exports;
}
