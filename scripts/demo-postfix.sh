#!/usr/bin/env bash
# A private Postfix in front of scripts/demo.sh, built from the recipe
# itself (docs/recipes/postfix.md: the ```postfix-main and
# ```postfix-master blocks, as printed): submission with STARTTLS on
# 127.0.0.1:2587, with TLS on 127.0.0.1:2465, a self-signed certificate,
# and accepted mail relayed to the demo's sink (demo/Maildir/new).
# Everything lives in demo/postfix; the system's Postfix is not touched.
# Needs root, postfix and openssl. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD/demo/postfix"
recipe=docs/recipes/postfix.md
block() { awk -v tag="\`\`\`$1" '$0 == tag { on = 1; next } on && $0 == "```" { on = 0 } on' "$recipe"; }

command -v postfix >/dev/null || { echo "postfix is not installed (apt-get install postfix)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root: Postfix's daemons start as root and drop to the postfix user" >&2; exit 1; }
mkdir -p "$root/etc" "$root/spool" "$root/data"
chmod 755 "$PWD/demo" "$root"
chown postfix "$root/data"
if [ ! -f "$root/etc/tls.pem" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj /CN=localhost \
        -keyout "$root/etc/key.pem" -out "$root/etc/cert.pem" 2>/dev/null
    cat "$root/etc/key.pem" "$root/etc/cert.pem" > "$root/etc/tls.pem"
    chmod 600 "$root/etc/tls.pem" "$root/etc/key.pem"
fi

{
    cat <<CF
compatibility_level = 3.6
queue_directory = $root/spool
data_directory = $root/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mail.example.com
mydomain = example.com
myorigin = example.com
mydestination =
relayhost = [127.0.0.1]:2525
smtp_dns_support_level = disabled
maillog_file = $root/maillog
maillog_file_prefixes = $root
alias_maps =
alias_database =
local_recipient_maps =
smtputf8_enable = no
biff = no
CF
    block postfix-main | sed "s#/etc/postfix/tls/mail.example.com.pem#$root/etc/tls.pem#"
} > "$root/etc/main.cf"
{
    cat <<'CF'
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       -       0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
CF
    block postfix-master | sed -e 's/^submissions inet/127.0.0.1:2465 inet/' -e 's/^submission inet/127.0.0.1:2587 inet/'
} > "$root/etc/master.cf"

postfix -c "$root/etc" set-permissions >/dev/null
postfix -c "$root/etc" check
trap 'postfix -c "$root/etc" stop >/dev/null 2>&1 || true' EXIT
echo "demo Postfix: submission 127.0.0.1:2587 (STARTTLS), 127.0.0.1:2465 (TLS); log $root/maillog" >&2
postfix -c "$root/etc" start-fg
