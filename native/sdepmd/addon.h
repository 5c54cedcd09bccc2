/* sdepmd's one N-API addon: libsystemd and the few syscalls Node lacks.
 * Each subsystem lives in its own .c file and adds its functions to `exports` through an init function declared
 * here; addon.c calls them all. Every entry point validates its arguments and reports failure as a thrown
 * TypeError (bad arguments) or a negative errno (the call failed): nothing here may crash the process. */
#ifndef SDEPMD_ADDON_H
#define SDEPMD_ADDON_H
#define NAPI_VERSION 8
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>

/* Jump to `fail` when an N-API call does not succeed; THROW raises a TypeError first. */
#define CHECK(call) do { if ((call) != napi_ok) goto fail; } while (0)
#define THROW(msg) do { napi_throw_type_error(env, NULL, msg); goto fail; } while (0)

/* Export `fn` as `name` on `exports`. */
napi_status sdepmd_export(napi_env env, napi_value exports, const char *name, napi_callback fn);

/* Read a JS number that must be an integer in [min, max]; throws a TypeError naming `what` otherwise. */
bool sdepmd_get_int(napi_env env, napi_value value, int64_t min, int64_t max, const char *what, int64_t *out);

/* The subsystems. */
napi_status sdepmd_init_notify(napi_env env, napi_value exports);
napi_status sdepmd_init_fd(napi_env env, napi_value exports);
napi_status sdepmd_init_journal(napi_env env, napi_value exports);
napi_status sdepmd_init_fdpass(napi_env env, napi_value exports);
napi_status sdepmd_init_socket(napi_env env, napi_value exports);
napi_status sdepmd_init_engine(napi_env env, napi_value exports);

#endif
