/* journalSend(fields: string[]): number
 * sd_journal_sendv(3): one journal entry made of "KEY=value" fields (MESSAGE=, PRIORITY=, MESSAGE_ID=, EPMD_NODE=…).
 * Values may hold any bytes but NUL, newlines included. Returns 0 once sent, or a negative errno (for example
 * -ENOENT when journald's socket is missing); throws a TypeError on bad arguments. */
#include "addon.h"
/* No CODE_FILE=/CODE_LINE=/CODE_FUNC= of this file: they would say nothing about the event. */
#define SD_JOURNAL_SUPPRESS_LOCATION 1
#include <systemd/sd-journal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#define MAX_FIELDS 32          /* sdepmd sends at most ten */
#define MAX_FIELD_BYTES 65536  /* a node name is at most 1020 bytes; a message line a few hundred */

/* A journal field name: 1-64 of A-Z, 0-9 and _, not starting with a digit or _ (journald drops other names). */
static bool valid_key(const char *field, size_t len) {
  size_t i = 0;
  if (len == 0 || field[0] == '_' || (field[0] >= '0' && field[0] <= '9')) return false;
  for (; i < len && field[i] != '='; i++) {
    char c = field[i];
    if (i >= 64 || !((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return i > 0 && i < len;
}

static napi_value journal_send(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result = NULL;
  bool is_array = false;
  uint32_t n = 0, filled = 0;
  struct iovec iov[MAX_FIELDS];

  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 1) THROW("journalSend(fields) expects 1 argument");
  CHECK(napi_is_array(env, argv[0], &is_array));
  if (!is_array) THROW("fields must be an array of \"KEY=value\" strings");
  CHECK(napi_get_array_length(env, argv[0], &n));
  if (n == 0 || n > MAX_FIELDS) THROW("fields must hold 1 to 32 entries");
  while (filled < n) {
    napi_value el;
    napi_valuetype type;
    size_t len = 0;
    char *field;
    CHECK(napi_get_element(env, argv[0], filled, &el));
    CHECK(napi_typeof(env, el, &type));
    if (type != napi_string) THROW("each field must be a string");
    CHECK(napi_get_value_string_utf8(env, el, NULL, 0, &len));
    if (len == 0 || len > MAX_FIELD_BYTES) THROW("each field must be 1..65536 bytes");
    if ((field = malloc(len + 1)) == NULL) THROW("out of memory");
    iov[filled].iov_base = field; /* owned by iov from here: freed at the end, whatever happens */
    iov[filled].iov_len = 0;
    filled++;
    CHECK(napi_get_value_string_utf8(env, el, field, len + 1, &len));
    iov[filled - 1].iov_len = len;
    if (strlen(field) != len) THROW("fields must not contain NUL");
    if (!valid_key(field, len)) THROW("each field must be KEY=value, KEY of A-Z, 0-9 and _");
  }
  CHECK(napi_create_int32(env, sd_journal_sendv(iov, (int)n), &result));
fail:
  for (uint32_t i = 0; i < filled; i++) free(iov[i].iov_base);
  return result;
}

napi_status sdepmd_init_journal(napi_env env, napi_value exports) {
  return sdepmd_export(env, exports, "journalSend", journal_send);
}
