#!/usr/bin/env bash
# Runs mailwarrant on the embedded default: the LDIF demo directory and a
# SQLite store, no servers needed, with every front end of config/demo.toml
# (Dovecot auth 127.0.0.1:10030, saslauthd demo/saslauthd/mux, policy
# :10040, milter :10050, HTTP :8040). A mail sink on 127.0.0.1:2525
# (python3-aiosmtpd) keeps mailwarrant's own mail, one file per message, in
# demo/Maildir/new. MAILWARRANT_BIN runs a built binary instead of cargo.
# Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p demo
if /usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null; then
    /usr/bin/python3 -m aiosmtpd -n -l 127.0.0.1:2525 -c aiosmtpd.handlers.Mailbox demo/Maildir &
    sink=$!
    trap 'kill "$sink" 2>/dev/null || true' EXIT
    echo "demo: mailwarrant's own mail lands in demo/Maildir/new (sink on 127.0.0.1:2525)" >&2
else
    echo "demo: no mail sink (apt-get install python3-aiosmtpd): mail from mailwarrant will fail to send" >&2
fi
if [ -n "${MAILWARRANT_BIN:-}" ]; then
    "$MAILWARRANT_BIN" serve --config config/demo.toml "$@"
else
    cargo run --release -- serve --config config/demo.toml "$@"
fi
