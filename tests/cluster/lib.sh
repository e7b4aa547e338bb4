# Shared helpers for tests/cluster/{up,down,restart-apiserver}; sourced, not
# executed.
# shellcheck shell=bash

cluster_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
bin_dir="$cluster_dir/.bin"
state_dir="${KUBEGQL_CLUSTER_STATE:-$cluster_dir/.state}"
mkdir -p "$state_dir"
state_dir="$(cd "$state_dir" && pwd -P)"
pid_dir="$state_dir/pids"
log_dir="$state_dir/logs"
# args/NAME: the exact argv (after the binary, NUL-separated) that NAME was
# last started with, so a component can be restarted identically.
args_dir="$state_dir/args"

# Start order; down stops in reverse.
components=(echo etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

# second_control_plane: act on the second control plane instead: an etcd and a kube-apiserver
# only (no controllers, nodes or echo server), with their own certificates, tokens and data, in
# the state dir beside the first's (<state>-second). Tests that span clusters use it.
second_control_plane() {
  state_dir="$state_dir-second"
  mkdir -p "$state_dir"
  pid_dir="$state_dir/pids"
  log_dir="$state_dir/logs"
  args_dir="$state_dir/args"
  components=(etcd kube-apiserver)
  second=1
}
second=0

# lock_state: serialise up/down on the same state dir (held until exit).
lock_state() {
  exec 9>>"$state_dir/.lock"
  if command -v flock >/dev/null 2>&1; then
    flock -w 300 9 || { echo "could not lock $state_dir/.lock within 300s" >&2; exit 1; }
  fi
}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Milliseconds since the epoch (pure bash).
now_ms() { local t="${EPOCHREALTIME/[.,]/}"; echo $((t / 1000)); }

# pid_of NAME: prints the recorded pid if that process is alive and is still
# the binary we started (guards against pid reuse); returns 1 otherwise.
pid_of() {
  local name="$1" f="$pid_dir/$1.pid" pid exe
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -d "/proc/$pid" ]] || return 1
  exe="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
  exe="${exe% (deleted)}"
  [[ "$exe" == "$bin_dir/$name" ]] || return 1
  # A zombie is not alive.
  [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]] || return 1
  echo "$pid"
}

# launch NAME ARGS...: run .bin/NAME ARGS detached (own session, stdin
# /dev/null), appending its output to logs/NAME.log; record its pid in
# pids/NAME.pid and its ARGS in args/NAME. Does not check that it stays up.
launch() {
  local name="$1"; shift
  mkdir -p "$pid_dir" "$log_dir" "$args_dir"
  printf '%s\0' "$@" > "$args_dir/$name.tmp"
  mv "$args_dir/$name.tmp" "$args_dir/$name"
  # 9>&-: the long-running process must not inherit the state lock.
  setsid "$bin_dir/$name" "$@" >>"$log_dir/$name.log" 2>&1 </dev/null 9>&- &
  echo $! > "$pid_dir/$name.pid.tmp"
  mv "$pid_dir/$name.pid.tmp" "$pid_dir/$name.pid"
}

# read_args NAME [PID]: print NAME's recorded argv, NUL-separated, from
# args/NAME; failing that, from /proc/PID/cmdline of the running process
# (a cluster started before args/ existed). Returns 1 if neither is there.
read_args() {
  local name="$1" pid="${2:-}"
  if [[ -s "$args_dir/$name" ]]; then
    cat "$args_dir/$name"
  elif [[ -n "$pid" && -r "/proc/$pid/cmdline" ]]; then
    tail -z -n +2 "/proc/$pid/cmdline"
  else
    return 1
  fi
}

log_tail() {
  local name="$1" n="${2:-40}"
  if [[ -f "$log_dir/$name.log" ]]; then
    echo "----- last $n lines of $log_dir/$name.log -----" >&2
    tail -n "$n" "$log_dir/$name.log" >&2
    echo "----- end of $name.log -----" >&2
  else
    echo "(no log file $log_dir/$name.log)" >&2
  fi
}

# stop_all: stop every recorded component, newest first. TERM, then KILL
# after a grace period. Only pids recorded by up (and still running our
# binaries) are signalled.
stop_all() {
  local i name pid deadline
  for ((i = ${#components[@]} - 1; i >= 0; i--)); do
    name="${components[$i]}"
    if pid="$(pid_of "$name")"; then
      log "stopping $name (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      deadline=$(($(now_ms) + 15000))
      while [[ -d "/proc/$pid" ]] && pid_of "$name" >/dev/null; do
        if (($(now_ms) > deadline)); then
          log "$name (pid $pid) did not exit after TERM; sending KILL"
          kill -KILL "$pid" 2>/dev/null || true
          sleep 0.2
          break
        fi
        sleep 0.1
      done
    fi
    rm -f "$pid_dir/$name.pid"
  done
}
