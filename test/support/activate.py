#!/usr/bin/env python3
"""Socket activation without systemd, for tests: what systemd does for a socket unit, then exec.

Usage: activate.py [--pidfdid=own|N] [--backlog=N] SPEC... -- COMMAND ARGS...
  SPEC is NAME=tcp4:HOST or NAME=tcp6:HOST (port chosen by the kernel).
Binds and listens on each socket, places them at fds 3, 4, ... (SD_LISTEN_FDS_START), sets LISTEN_FDS,
LISTEN_PID (this pid, which exec keeps) and LISTEN_FDNAMES, prints {"ports": [...]} on stdout, then execs COMMAND.
--pidfdid also sets LISTEN_PIDFDID, as systemd >= 256 does: "own" is the inode of a pidfd for this process (which
exec keeps), N is any other value. --backlog is the listen() backlog of each socket (systemd's Backlog=; 16 by
default).
"""
import json, os, socket, sys

def main():
    sep = sys.argv.index("--")
    specs, command = sys.argv[1:sep], sys.argv[sep + 1:]
    pidfdid = None
    backlog = 16
    while specs and specs[0].startswith("--"):
        option, _, value = specs.pop(0).partition("=")
        if option == "--pidfdid":
            pidfdid = value
            if pidfdid == "own":
                pidfdid = str(os.fstat(os.pidfd_open(os.getpid())).st_ino)
        elif option == "--backlog":
            backlog = int(value)
        else:
            sys.exit(f"activate.py: unknown option {option}")
    socks, names, ports = [], [], []
    for spec in specs:
        name, _, rest = spec.partition("=")
        family, _, host = rest.partition(":")
        s = socket.socket(socket.AF_INET6 if family == "tcp6" else socket.AF_INET, socket.SOCK_STREAM)
        if family == "tcp6":
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if host == "::" else 1)
        s.bind((host, 0))
        s.listen(backlog)
        socks.append(s)
        names.append(name)
        ports.append(s.getsockname()[1])
    for i, s in enumerate(socks):
        target = 3 + i
        if s.fileno() != target:
            os.dup2(s.fileno(), target)
        os.set_inheritable(target, True)
    env = dict(os.environ)
    env.update(LISTEN_FDS=str(len(socks)), LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES=":".join(names))
    if pidfdid is not None:
        env["LISTEN_PIDFDID"] = pidfdid
    print(json.dumps({"ports": ports}), flush=True)
    os.execvpe(command[0], command, env)

main()
