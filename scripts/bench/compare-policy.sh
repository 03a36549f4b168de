#!/usr/bin/env bash
# Policy delegation throughput: mailwarrant vs postfwd2 vs policyd-rate-limit,
# in one run, driven by the same Rust load client (benches/policy.rs):
# RCPT + END-OF-MESSAGE requests per message, 4 recipients, persistent
# connections, 10,000 users, concurrency 1, 8 and 32.
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
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing on port $1" >&2; return 1; }

cargo build --release --bench policy >/dev/null 2>&1 || cargo build --release --bench policy
bench() { cargo bench -q --bench policy -- --seconds "$SECONDS_PER_LEVEL" "$@" 2>/dev/null; }

echo "## $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, ${SECONDS_PER_LEVEL}s per level"
echo
# mailwarrant: in-process server (release build), test slapd, SQLite with
# the default durability (fsync per commit), then with `synchronous = "normal"`.
bench --label "mailwarrant (sqlite full)" --synchronous full
bench --label "mailwarrant (sqlite normal)" --synchronous normal | tail -n +3
# The shared store: a local redis-server the benchmark starts (no persistence).
bench --label "mailwarrant (redis)" --store redis | tail -n +3

# postfwd2
mkdir -p "$work/postfwd"; chmod 777 "$work/postfwd"
cat > "$work/postfwd/rules.cf" <<'RULES'
id=SPOOF; protocol_state==RCPT; sasl_username=!!^$; sender=!!$$sasl_username@; action=REJECT 5.7.1 sender not owned by login
id=MAXRCPT; protocol_state==END-OF-MESSAGE; recipient_count=101; action=REJECT 5.5.3 too many recipients
id=RATE; protocol_state==END-OF-MESSAGE; sasl_username=!!^$; action=rate(sasl_username/100000/86400/450 4.7.1 rate limit reached)
RULES
pf_port="$(free_port)"
# postfwd2 daemonizes (a policy server and a cache process); --perfmon
# turns logging off (there is no syslog here, and its stderr fallback
# would write into the policy sockets).
pf_cache_port="$(free_port)"
/usr/sbin/postfwd2 -n --perfmon --file "$work/postfwd/rules.cf" --interface 127.0.0.1 --port "$pf_port" \
  --user nobody --group nogroup --pidfile "$work/postfwd/postfwd.pid" \
  --cache_socket "tcp:127.0.0.1:$pf_cache_port" --logname postfwd-bench >"$work/postfwd/log" 2>&1
wait_port "$pf_port"
bench --label postfwd2 --target "127.0.0.1:$pf_port" | tail -n +3

# policyd-rate-limit
mkdir -p "$work/prl"; chmod 777 "$work/prl"
prl_port="$(free_port)"
cat > "$work/prl/policyd-rate-limit.yaml" <<YAML
debug: False
user: "nobody"
group: "nogroup"
pidfile: "$work/prl/policyd.pid"
sqlite_config:
    database: "$work/prl/db.sqlite3"
backend: 0
SOCKET: ["127.0.0.1", $prl_port]
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
pids+=($!)
wait_port "$prl_port"
bench --label policyd-rate-limit --target "127.0.0.1:$prl_port" | tail -n +3
