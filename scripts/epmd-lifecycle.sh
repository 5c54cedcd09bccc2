#!/usr/bin/env bash
# The transitions of epmd itself, shared by scripts/install.sh and the Debian package's maintainer scripts, so that
# none of them loses a registration or stops an app. None of them ever restarts epmd.service: a restart job
# restarts every unit with Requires=epmd.service.
#
#   epmd-lifecycle.sh take-over BIN [--start]
#       Run after sdepmd's units are in place and systemd has reloaded them. A running sdepmd is live-upgraded
#       (systemctl reload: fails, with the old code still serving, when the new code does not start). A C epmd
#       that holds the epmd port (Debian's epmd.service, or a stray `epmd -daemon`) is adopted: `BIN adopt`
#       copies each of its registrations' connections, ends it, starts sdepmd and hands them over. When only
#       systemd holds the port (an epmd.socket with no epmd running yet), or nothing does, --start starts
#       epmd.socket. When anything else holds the port (another program, an sdepmd that epmd.service does not
#       run, or a process this shell cannot see, as from another PID namespace), it says what, changes nothing
#       (no process ended, no unit started or reloaded) and exits 3.
#   epmd-lifecycle.sh release [--force]
#       Run before sdepmd's units are removed. Removes the drop-ins `sdepmd attach` wrote (then daemon-reload), so
#       that no app requires epmd.service any more; says which registrations will have to register again, and
#       refuses (exit 1) without --force when some belong to processes that cannot (anything but an OTP >= 23.3
#       node). Keeps the registered names in /run/sdepmd-release.names for `hand-back` to measure.
#   epmd-lifecycle.sh hand-back
#       Run after sdepmd's units are removed and systemd has reloaded: ends sdepmd without a stop job (no app is
#       stopped), empties its fd store, lets Debian's epmd.socket serve the port, and measures how long the nodes
#       take to register again with the C epmd.
set -euo pipefail

say() { echo "sdepmd: $*" >&2; }
# The epmd port; ERL_EPMD_PORT as Erlang itself reads it (for tests on a port of their own).
port="${ERL_EPMD_PORT:-4369}"
names_file=/run/sdepmd-release.names

# The main process of epmd.service runs sdepmd (not the C epmd).
main_is_sdepmd() {
  local pid
  pid=$(systemctl show -p MainPID --value epmd.service 2>/dev/null || echo 0)
  [ -n "$pid" ] && [ "$pid" != 0 ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != epmd ] \
    && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q sdepmd
}

# The inodes of the sockets listening on the epmd port in this network namespace (IPv4 and IPv6).
port_listeners() {
  local hex
  hex=$(printf '%04X' "$port")
  awk -v p=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { print $10 }' /proc/net/tcp /proc/net/tcp6 2>/dev/null | sort -u
}

# "pid comm" of every process holding one of the socket inodes given, one a line.
socket_holders() {
  local inode fd pid
  for inode in "$@"; do
    find /proc/[0-9]*/fd -maxdepth 1 -lname "socket:\\[$inode\\]" 2>/dev/null || true  # processes come and go
  done | while read -r fd; do
    pid=${fd#/proc/}; pid=${pid%%/*}
    echo "$pid $(cat "/proc/$pid/comm" 2>/dev/null || echo '?')"
  done | sort -un
}

# Who holds the epmd port, as one word: none, systemd (PID 1 only: a socket unit, no epmd yet), c-epmd (a C epmd
# holds it, perhaps with PID 1), or foreign; for foreign, what holds it follows on the next line.
port_owner() {
  local inodes holders pid comm others=()
  inodes=$(port_listeners)
  [ -z "$inodes" ] && { echo none; return; }
  # shellcheck disable=SC2086
  holders=$(socket_holders $inodes)
  if [ -z "$holders" ]; then
    echo foreign
    echo "a process this shell cannot see (another PID namespace?)"
    return
  fi
  local c_epmd=0
  while read -r pid comm; do
    if [ "$pid" = 1 ]; then continue; fi
    if [ "$comm" = epmd ]; then c_epmd=1; continue; fi
    others+=("$comm (pid $pid: $(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | cut -c1-120))")
  done <<< "$holders"
  if [ "${#others[@]}" -gt 0 ]; then
    echo foreign
    echo "${others[*]}"
  elif [ "$c_epmd" = 1 ]; then
    echo c-epmd
  else
    echo systemd
  fi
}

take_over() {
  local bin="${1:?take-over needs the sdepmd binary}" start="${2:-}" owner what
  if main_is_sdepmd; then
    say "live-upgrading the running sdepmd (systemctl reload epmd.service; no app is restarted)"
    if ! systemctl reload epmd.service; then
      say "the live upgrade failed: the previous sdepmd still serves every registration (see: journalctl -u epmd.service)"
      return 1
    fi
    journalctl -u epmd.service -n 20 --no-pager -o cat 2>/dev/null | grep 'live upgrade:' | tail -n 1 | sed 's/^/sdepmd: /' >&2 || true
    return 0
  fi
  { read -r owner; read -r what || true; } < <(port_owner)
  case "$owner" in
    c-epmd)
      say "taking over the running C epmd without losing its registrations (sdepmd adopt)"
      "$bin" adopt --port "$port"
      ;;
    foreign)
      say "port $port is held by $what: neither systemd's epmd.socket nor a C epmd that sdepmd adopt can take over"
      say "the take-over changed nothing (no process ended, no unit started); sdepmd's files are installed but it does not serve"
      say "stop that program (ss -ltnp 'sport = :$port' shows it), then run this again"
      return 3
      ;;
    *)
      if [ "$start" = --start ]; then systemctl start epmd.socket; fi
      ;;
  esac
}

# Drop-ins written by `sdepmd attach` (and the template unit's): they make apps require epmd.service.
attach_drop_ins() {
  local f
  for f in /etc/systemd/system/*.d/epmd-dependency.conf; do
    [ -f "$f" ] && grep -q '^Requires=epmd.service\|^Wants=epmd.socket' "$f" && echo "$f"
  done
  return 0
}

# Clients holding a connection to epmd, one "process pid erts-version" a line ("-" when not an Erlang VM).
epmd_clients() {
  ss -Htnp state established "( dport = :$port )" 2>/dev/null | grep -o 'users:(([^)]*))' \
    | sed -E 's/users:\(\("([^"]*)",pid=([0-9]+).*/\1 \2/' | sort -u | while read -r comm pid; do
      exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
      erts=$(echo "$exe" | sed -nE 's#.*/erts-([0-9.]+)/bin/.*#\1#p')
      echo "$comm $pid ${erts:--}"
    done
}

# erts 11.2 is OTP 23.3, the first whose nodes register again when epmd goes away.
reregisters() {
  local erts="$1" major minor
  [ "$erts" = - ] && return 1
  major=${erts%%.*}; minor=$(echo "$erts" | cut -d. -f2)
  [ "$major" -gt 11 ] || { [ "$major" = 11 ] && [ "${minor:-0}" -ge 2 ]; }
}

release() {
  local force="${1:-}" f changed=0 lost=() otp=0
  # First what would be lost, so that a refusal changes nothing at all.
  if main_is_sdepmd; then
    if ! command -v ss >/dev/null 2>&1; then
      lost+=("(cannot tell which programs hold registrations: ss is missing; apt-get install iproute2)")
    fi
    while read -r comm pid erts; do
      [ -z "$comm" ] && continue
      if reregisters "$erts"; then otp=$((otp + 1)); else lost+=("$comm (pid $pid${erts:+, erts $erts})"); fi
    done < <(epmd_clients)
    epmd -names 2>/dev/null | sed -nE 's/^name (.*) at port [0-9]+$/\1/p' > "$names_file" || true
    echo "$otp" > "$names_file.otp"
    say "$(wc -l < "$names_file") registration(s) end with sdepmd; $otp held by OTP >= 23.3 nodes, which register again within about 2 s"
    if [ "${#lost[@]}" -gt 0 ]; then
      say "these cannot register again by themselves, and would stay unregistered: ${lost[*]}"
      if [ "$force" != --force ]; then
        say "refusing to uninstall: nothing changed; stop or restart those programs afterwards, or run again with --force"
        rm -f "$names_file" "$names_file.otp"
        return 1
      fi
      say "--force: going on"
    fi
  fi
  for f in $(attach_drop_ins); do
    rm -f "$f"; rmdir "$(dirname "$f")" 2>/dev/null || true
    say "removed $f (the app keeps running; it no longer requires epmd.service)"
    changed=1
  done
  if [ "$changed" = 1 ]; then systemctl daemon-reload; fi
}

hand_back() {
  local t0 want otp back=0 n=0 ms pid
  # No stop job: a stop job on epmd.service (or on epmd.socket, which it requires) would stop every unit that still
  # requires it. The main process is told to end instead (SIGINT: hang up on every node and empty the fd store),
  # which systemd sees as the service ending by itself.
  if main_is_sdepmd; then
    pid=$(systemctl show -p MainPID --value epmd.service)
    systemctl kill --kill-whom=main --signal=SIGINT epmd.service
    while [ "$n" -lt 100 ] && kill -0 "$pid" 2>/dev/null; do sleep 0.1; n=$((n + 1)); done
    n=0
  fi
  systemctl clean --what=fdstore epmd.service >/dev/null 2>&1 || true
  rm -rf /run/sdepmd
  if [ ! -e /lib/systemd/system/epmd.socket ] && [ ! -e /usr/lib/systemd/system/epmd.socket ]; then
    systemctl stop epmd.socket 2>/dev/null || true
    say "no other epmd units are installed: Erlang nodes start their own epmd again (erl -start_epmd true)"
    return 0
  fi
  systemctl reset-failed epmd.service >/dev/null 2>&1 || true
  systemctl start epmd.socket
  say "Debian's epmd.socket serves port $port (its C epmd starts on the first connection)"
  [ -s "$names_file" ] || { rm -f "$names_file" "$names_file.otp"; return 0; }
  want=$(wc -l < "$names_file")
  # Wait for as many as OTP >= 23.3 nodes held (they retry every 2 s), at most 15 s.
  otp=$(cat "$names_file.otp" 2>/dev/null || echo "$want")
  t0=$(date +%s%N)
  while [ "$n" -lt 150 ]; do
    back=$(epmd -names 2>/dev/null | sed -nE 's/^name (.*) at port [0-9]+$/\1/p' | grep -cxFf "$names_file" || true)
    [ "$back" -ge "$otp" ] && break
    sleep 0.1; n=$((n + 1))
  done
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  say "$back of $want registration(s) came back to the C epmd within $ms ms$([ "$back" -lt "$want" ] && echo "; $((want - back)) did not (their programs must register again)")"
  rm -f "$names_file" "$names_file.otp"
}

case "${1:-}" in
  take-over) shift; take_over "$@" ;;
  release) shift; release "$@" ;;
  hand-back) hand_back ;;
  *) echo "usage: epmd-lifecycle.sh take-over BIN [--start] | release [--force] | hand-back" >&2; exit 2 ;;
esac
