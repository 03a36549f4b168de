#!/usr/bin/env bash
# Policy delegation throughput: mailwarrant vs postfwd2 vs policyd-rate-limit,
# in one run, driven by the same Rust load client (benches/policy.rs):
# RCPT + END-OF-MESSAGE requests per message, 4 recipients, persistent
# connections, 10,000 users, concurrency 1, 8 and 32; once over loopback TCP
# (check_policy_service inet:…) and once over UNIX sockets
# (check_policy_service unix:…, as in Postfix's SMTPD_POLICY_README), each
# server on the same transport as the others, and the do-nothing server
# (the ceiling of this client and machine) on both. It ends with the ratios
# at concurrency 32.
#
# Equivalent rule sets, as far as each tool can express them:
#   mailwarrant         sender must belong to the login (directory), sender domain,
#                       no distribution lists, max 100 recipients, 100000/1d
#                       messages per user (SQLite counters), 10,000 users in a
#                       test slapd; once with [store] synchronous = "full"
#                       (default), once with "normal"
#   postfwd2            sender local part == sasl_username, recipient_count>=101
#                       rejected, rate(sasl_username/100000/86400) at END-OF-MESSAGE
#   policyd-rate-limit  100000/1d per sasl_username (SQLite); it has no sender or
#                       recipient-count rule
# The limits are high so that every server does its full work on every
# request without refusing.
#
# Usage: scripts/bench/compare-policy.sh [SECONDS]   (default 5 per level)
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER_LEVEL="${1:-5}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"

need=()
[ -x /usr/sbin/postfwd2 ] || need+=(postfwd)
[ -x /usr/bin/policyd-rate-limit ] || need+=(policyd-rate-limit)
[ -x /usr/bin/redis-server ] || need+=(redis-server)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

work="$(mktemp -d)"
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -e "$work/postfwd/postfwd.pid" ] && /usr/sbin/postfwd2 --kill --pidfile "$work/postfwd/postfwd.pid" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# $1: 127.0.0.1:PORT or unix:PATH
wait_for() {
  for _ in $(seq 1 100); do
    case "$1" in
      unix:*) [ -S "${1#unix:}" ] && return 0 ;;
      *) (exec 3<>"/dev/tcp/127.0.0.1/${1##*:}") 2>/dev/null && return 0 ;;
    esac
    sleep 0.1
  done
  echo "nothing listens on $1" >&2
  return 1
}

cargo build --release --bench policy >/dev/null 2>&1 || cargo build --release --bench policy
bench() { cargo bench -q --bench policy -- --seconds "$SECONDS_PER_LEVEL" "$@" 2>/dev/null; }

echo "## $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, ${SECONDS_PER_LEVEL}s per level"
echo
echo "| server | concurrency | requests/s | p50 ms | p99 ms | messages/s | END-OF-MESSAGE actions |"
echo "|---|---:|---:|---:|---:|---:|---|"
rows="$work/rows"
row() { tail -n +3 | tee -a "$rows"; }

mkdir -p "$work/postfwd" "$work/prl"; chmod 777 "$work/postfwd" "$work/prl"
cat > "$work/postfwd/rules.cf" <<'RULES'
id=SPOOF; protocol_state==RCPT; sasl_username=!!^$; sender=!!$$sasl_username@; action=REJECT 5.7.1 sender not owned by login
id=MAXRCPT; protocol_state==END-OF-MESSAGE; recipient_count=101; action=REJECT 5.5.3 too many recipients
id=RATE; protocol_state==END-OF-MESSAGE; sasl_username=!!^$; action=rate(sasl_username/100000/86400/450 4.7.1 rate limit reached)
RULES

# postfwd2 daemonizes (a policy server and a cache process); --perfmon
# turns logging off (there is no syslog here, and its stderr fallback
# would write into the policy sockets). $1: tcp or unix.
start_postfwd() {
  local sockets
  if [ "$1" = tcp ]; then
    pf_port="$(free_port)"
    sockets=(--interface 127.0.0.1 --port "$pf_port" --cache_socket "tcp:127.0.0.1:$(free_port)")
    pf_target="127.0.0.1:$pf_port"
  else
    sockets=(--proto unix --port "$work/postfwd/policy.sock" --cache_proto unix --cache_port "$work/postfwd/cache.sock")
    pf_target="unix:$work/postfwd/policy.sock"
  fi
  /usr/sbin/postfwd2 -n --perfmon --file "$work/postfwd/rules.cf" "${sockets[@]}" \
    --user nobody --group nogroup --pidfile "$work/postfwd/postfwd.pid" \
    --logname postfwd-bench >"$work/postfwd/log" 2>&1
  wait_for "$pf_target"
}
stop_postfwd() {
  /usr/sbin/postfwd2 --kill --pidfile "$work/postfwd/postfwd.pid" >/dev/null 2>&1 || true
  for _ in $(seq 1 50); do [ -e "$work/postfwd/postfwd.pid" ] || break; sleep 0.1; done
  rm -f "$work/postfwd/"*.sock
}

start_policyd_rate_limit() {
  local socket
  if [ "$1" = tcp ]; then
    local port; port="$(free_port)"
    socket="[\"127.0.0.1\", $port]"
    prl_target="127.0.0.1:$port"
  else
    socket="\"$work/prl/policy.sock\""
    prl_target="unix:$work/prl/policy.sock"
  fi
  cat > "$work/prl/policyd-rate-limit.yaml" <<YAML
debug: False
user: "nobody"
group: "nogroup"
pidfile: "$work/prl/policyd.pid"
sqlite_config:
    database: "$work/prl/db.sqlite3"
backend: 0
SOCKET: $socket
socket_permission: 0666
limits:
    - [100000, 86400]
limits_by_id: {}
limit_by_sasl: True
limit_by_sender: False
limit_by_ip: False
limited_networks: []
success_action: "dunno"
fail_action: "defer_if_permit Rate limit reach, retry later"
db_error_action: "dunno"
report: False
delay_to_close: 300
YAML
  /usr/bin/policyd-rate-limit --file "$work/prl/policyd-rate-limit.yaml" >"$work/prl/log" 2>&1 &
  prl_pid=$!
  pids+=("$prl_pid")
  wait_for "$prl_target"
}
stop_policyd_rate_limit() {
  kill "$prl_pid" 2>/dev/null || true
  wait "$prl_pid" 2>/dev/null || true
  rm -f "$work/prl/policy.sock"
}

for transport in tcp unix; do
  flag=(); [ "$transport" = unix ] && flag=(--unix)
  # mailwarrant: in-process server (release build), test slapd, SQLite with
  # the default durability (fsync per commit); over TCP also with
  # `synchronous = "normal"` and with a local redis-server (no persistence).
  bench --label "mailwarrant (sqlite full, $transport)" --synchronous full "${flag[@]}" | row
  if [ "$transport" = tcp ]; then
    bench --label "mailwarrant (sqlite normal, tcp)" --synchronous normal | row
    bench --label "mailwarrant (redis, tcp)" --store redis | row
  fi
  start_postfwd "$transport"
  bench --label "postfwd2 ($transport)" --target "$pf_target" | row
  stop_postfwd
  start_policyd_rate_limit "$transport"
  bench --label "policyd-rate-limit ($transport)" --target "$prl_target" | row
  stop_policyd_rate_limit
  bench --label "do-nothing server ($transport)" --null "${flag[@]}" --concurrency 32 | row
done

echo
echo "At concurrency 32:"
awk -F'|' '
  { gsub(/^ +| +$/, "", $2); gsub(/ /, "", $3); gsub(/ /, "", $4) }
  $3 == 32 { rate[$2] = $4 }
  END {
    split("tcp unix", transports, " ")
    for (i = 1; i <= 2; i++) {
      tr = transports[i]
      mw = rate["mailwarrant (sqlite full, " tr ")"]
      pf = rate["postfwd2 (" tr ")"]; prl = rate["policyd-rate-limit (" tr ")"]; nul = rate["do-nothing server (" tr ")"]
      if (mw == "" || pf == "" || prl == "") continue
      printf "- %s: mailwarrant %d requests/s = %.1f× policyd-rate-limit (≥ 30×), %.1f× postfwd2 (≥ 50×); the do-nothing server %d = %.1f× postfwd2\n", tr, mw, mw / prl, mw / pf, nul, nul / pf
    }
  }' "$rows"
