/* File-descriptor calls Node lacks, for socket activation (sd_listen_fds(3) semantics):
 *
 * setCloexec(fd: number): number
 *   Sets FD_CLOEXEC on an inherited fd, as sd_listen_fds() does on each passed fd. 0, or a negative errno
 *   (-EBADF when the fd is not open).
 *
 * pidfdInodeId(pid: number): bigint | number
 *   The inode number of a pidfd for `pid` on pidfs (Linux >= 6.9): a process's unique id, which systemd >= 256
 *   passes as LISTEN_PIDFDID. A negative errno otherwise: -EOPNOTSUPP when pidfds are not on pidfs (older kernels
 *   give every pidfd the same anonymous inode, so the number means nothing), -ESRCH for no such process, -ENOSYS
 *   without pidfd_open(2).
 *
 * trimHeap(): number
 *   malloc_trim(0): gives the C heap's free pages back to the system (after many connections closed, glibc keeps
 *   what their records used). 1 when memory was released, 0 when there was none to release. */
#include "addon.h"
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

#ifndef PID_FS_MAGIC
#define PID_FS_MAGIC 0x50494446
#endif

static napi_value set_cloexec(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result = NULL;
  int64_t fd;
  int flags, r = 0;

  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 1) THROW("setCloexec(fd) expects 1 argument");
  if (!sdepmd_get_int(env, argv[0], 0, INT32_MAX, "fd", &fd)) goto fail;
  flags = fcntl((int)fd, F_GETFD);
  if (flags < 0) r = -errno;
  else if (!(flags & FD_CLOEXEC) && fcntl((int)fd, F_SETFD, flags | FD_CLOEXEC) < 0) r = -errno;
  CHECK(napi_create_int32(env, r, &result));
fail:
  return result;
}

/* The pidfs inode id of `pid`, or a negative errno. */
static int64_t inode_id(pid_t pid, uint64_t *id) {
#ifdef SYS_pidfd_open
  struct statfs sfs;
  struct stat st;
  int r = 0;
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) return -errno;
  if (fstatfs(pidfd, &sfs) < 0) r = -errno;
  else if ((uint64_t)sfs.f_type != PID_FS_MAGIC) r = -EOPNOTSUPP;
  else if (fstat(pidfd, &st) < 0) r = -errno;
  else *id = (uint64_t)st.st_ino;
  close(pidfd);
  return r;
#else
  (void)pid;
  (void)id;
  return -ENOSYS;
#endif
}

static napi_value pidfd_inode_id(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result = NULL;
  int64_t pid, r;
  uint64_t id = 0;

  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 1) THROW("pidfdInodeId(pid) expects 1 argument");
  if (!sdepmd_get_int(env, argv[0], 1, INT32_MAX, "pid", &pid)) goto fail;
  r = inode_id((pid_t)pid, &id);
  if (r < 0) CHECK(napi_create_int32(env, (int32_t)r, &result));
  else CHECK(napi_create_bigint_uint64(env, id, &result));
fail:
  return result;
}

static napi_value trim_heap(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result = NULL;
  CHECK(napi_create_int32(env, malloc_trim(0), &result));
fail:
  return result;
}

napi_status sdepmd_init_fd(napi_env env, napi_value exports) {
  napi_status status = sdepmd_export(env, exports, "setCloexec", set_cloexec);
  if (status == napi_ok) status = sdepmd_export(env, exports, "pidfdInodeId", pidfd_inode_id);
  if (status != napi_ok) return status;
  return sdepmd_export(env, exports, "trimHeap", trim_heap);
}
