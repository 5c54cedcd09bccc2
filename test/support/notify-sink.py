#!/usr/bin/env python3
"""Fake NOTIFY_SOCKET for tests.

Usage: notify-sink.py SOCKET_PATH COUNT

Binds an AF_UNIX SOCK_DGRAM socket at SOCKET_PATH, prints {"ready": true}, then
receives COUNT datagrams with recvmsg(), printing one JSON line per datagram:
  {"message": str, "flags": int, "ctrunc": bool,
   "fds": [{"dev": str, "ino": str (decimal, exact), "mode": int, "peer": [host, port] | null}]}
Every received fd is fstat()ed (and, if it is a TCP socket, getpeername()d), then closed.
Exits 2 after printing {"error": ...} if nothing arrives within 10 seconds.
"""
import array, json, os, socket, stat, sys

MAX_FDS = 16

def describe(fd):
    st = os.fstat(fd)
    peer = None
    if stat.S_ISSOCK(st.st_mode):
        try:
            s = socket.socket(fileno=os.dup(fd))
            try:
                p = s.getpeername()
                peer = [p[0], p[1]] if isinstance(p, tuple) else None
            finally:
                s.close()
        except OSError:
            pass
    return {"dev": str(st.st_dev), "ino": str(st.st_ino), "mode": st.st_mode, "peer": peer}

def main():
    path, count = sys.argv[1], int(sys.argv[2])
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    print(json.dumps({"ready": True}), flush=True)
    for _ in range(count):
        try:
            data, anc, flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize))
        except socket.timeout:
            print(json.dumps({"error": "timeout waiting for a datagram"}), flush=True)
            sys.exit(2)
        fds = array.array("i")
        for level, typ, payload in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        described = []
        for fd in fds:
            described.append(describe(fd))
            os.close(fd)
        print(json.dumps({
            "message": data.decode("utf-8", "replace"),
            "flags": flags,
            "ctrunc": bool(flags & socket.MSG_CTRUNC),
            "fds": described,
        }), flush=True)
    sock.close()

if __name__ == "__main__":
    main()
