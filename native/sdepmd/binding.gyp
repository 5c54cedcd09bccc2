{
  "targets": [
    {
      "target_name": "sdepmd",
      "sources": ["addon.c", "notify.c", "fd.c", "journal.c", "fdpass.c", "socket.c", "engine.c"],
      "libraries": ["-lsystemd"],
      "cflags": ["-Wall", "-Wextra", "-std=gnu11"]
    }
  ]
}
