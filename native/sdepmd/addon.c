/* Module entry: each subsystem adds its own functions. */
#include "addon.h"
#include <stdio.h>

napi_status sdepmd_export(napi_env env, napi_value exports, const char *name, napi_callback fn) {
  napi_value value;
  napi_status status = napi_create_function(env, name, NAPI_AUTO_LENGTH, fn, NULL, &value);
  if (status != napi_ok) return status;
  return napi_set_named_property(env, exports, name, value);
}

bool sdepmd_get_int(napi_env env, napi_value value, int64_t min, int64_t max, const char *what, int64_t *out) {
  napi_valuetype type;
  double d;
  char msg[128];
  if (napi_typeof(env, value, &type) != napi_ok) return false;
  if (type == napi_number && napi_get_value_double(env, value, &d) == napi_ok && d >= (double)min &&
      d <= (double)max && d == (double)(int64_t)d) {
    *out = (int64_t)d;
    return true;
  }
  snprintf(msg, sizeof msg, "%s must be an integer from %lld to %lld", what, (long long)min, (long long)max);
  napi_throw_type_error(env, NULL, msg);
  return false;
}

NAPI_MODULE_INIT() {
  if (sdepmd_init_notify(env, exports) != napi_ok) return NULL;
  if (sdepmd_init_fd(env, exports) != napi_ok) return NULL;
  if (sdepmd_init_journal(env, exports) != napi_ok) return NULL;
  if (sdepmd_init_fdpass(env, exports) != napi_ok) return NULL;
  if (sdepmd_init_socket(env, exports) != napi_ok) return NULL;
  if (sdepmd_init_engine(env, exports) != napi_ok) return NULL;
  return exports;
}
