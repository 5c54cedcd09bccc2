{
  "targets": [
    {
      "target_name": "fdstore",
      "sources": ["fdstore.c"],
      "libraries": ["-lsystemd"],
      "cflags": ["-Wall", "-Wextra"]
    }
  ]
}
