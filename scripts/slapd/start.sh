#!/usr/bin/env bash
# Builds a throwaway OpenLDAP instance in DIR from schemas/ldap/ and runs
# slapd in the foreground on ldap://127.0.0.1:PORT/ (the demo uses 3389).
#
#   scripts/slapd/start.sh DIR [PORT] [--extra-users N] [--no-load-groups] [--debug LEVEL]
#
# --extra-users N  also loads user00001..userN (password User-Demo-2026!,
#                  no-lockout policy) in groups load-01.. of 1000, nested
#                  in `loadtest`: the benchmark's population.
# --no-load-groups  the generated users only, without their groups (the
#                  reminder scan needs none, and 100,000 users then load in
#                  one offline slapadd).
# --debug LEVEL    slapd's -d level (default 0; `stats` logs every op).
#
# A DIR that already holds an instance is reused as is (same data), so
# running this again restarts the same directory. The last step is an
# `exec`, so the caller's pid is slapd's: stop it with kill.
#
# Why two phases: only slapadd (offline) may set ppolicy's operational
# attributes (pwdChangedTime, pwdAccountLockedTime), and only online adds
# make the memberof overlay fill memberOf. So users go in with slapadd,
# then a private slapd on a UNIX socket takes the groups, then the real
# slapd starts on the TCP port (which therefore only answers once the
# data is complete).
set -euo pipefail

usage() { echo "usage: $0 DIR [PORT] [--extra-users N] [--no-load-groups] [--debug LEVEL]" >&2; exit 2; }
[ $# -ge 1 ] || usage
dir=$1
shift
port=3389
if [ $# -gt 0 ] && [[ $1 != --* ]]; then port=$1; shift; fi
extra=0
load_groups=1
debug=0
while [ $# -gt 0 ]; do
    case $1 in
        --extra-users) extra=${2:?}; shift 2 ;;
        --no-load-groups) load_groups=0; shift ;;
        --debug) debug=${2:?}; shift 2 ;;
        *) usage ;;
    esac
done

for program in /usr/sbin/slapd /usr/sbin/slapadd /usr/sbin/slaptest /usr/sbin/slappasswd /usr/bin/ldapmodify; do
    if [ ! -x "$program" ]; then
        echo "$program is missing: run scripts/test.sh (it installs Debian's slapd and ldap-utils)" >&2
        exit 1
    fi
done

here=$(cd "$(dirname "$0")" && pwd)
schemas=$here/../../schemas/ldap
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
admin_dn="cn=admin,dc=example,dc=com"
admin_pw="Admin-Demo-2026!"

# Lines `userPassword: @HASH@secret` become `userPassword: {SSHA}...`.
hash_passwords() {
    local line
    while IFS= read -r line; do
        if [[ $line == "userPassword: @HASH@"* ]]; then
            echo "userPassword: $(/usr/sbin/slappasswd -s "${line#userPassword: @HASH@}")"
        else
            echo "$line"
        fi
    done
}

extra_users() {
    local n=$1 hash i
    hash=$(/usr/sbin/slappasswd -s "User-Demo-2026!")
    for ((i = 1; i <= n; i++)); do
        printf 'dn: uid=user%05d,ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nobjectClass: mailwarrantUser\nuid: user%05d\ncn: Load User %05d\nsn: User\nmail: user%05d@example.com\nuserPassword: %s\npwdPolicySubentry: cn=no-lockout,ou=policies,dc=example,dc=com\n\n' \
            "$i" "$i" "$i" "$i" "$hash"
    done
}

extra_groups() {
    local n=$1 g i groups
    groups=$(((n + 999) / 1000))
    # groups.ldif may end without a blank line: separate the entries.
    echo
    for ((g = 1; g <= groups; g++)); do
        printf 'dn: cn=load-%02d,ou=groups,dc=example,dc=com\nobjectClass: groupOfNames\ncn: load-%02d\n' "$g" "$g"
        for ((i = (g - 1) * 1000 + 1; i <= g * 1000 && i <= n; i++)); do
            printf 'member: uid=user%05d,ou=people,dc=example,dc=com\n' "$i"
        done
        echo
    done
    printf 'dn: cn=loadtest,ou=groups,dc=example,dc=com\nobjectClass: groupOfNames\ncn: loadtest\n'
    for ((g = 1; g <= groups; g++)); do
        printf 'member: cn=load-%02d,ou=groups,dc=example,dc=com\n' "$g"
    done
    echo
}

build() {
    local now socket url pid tries
    now=$(date -u +%Y%m%d%H%M%SZ)
    mkdir -p "$dir/data"
    cp "$schemas/mailwarrant.schema" "$dir/"
    sed -e "s|@DIR@|$dir|g" -e "s|@ROOTPW@|$(/usr/sbin/slappasswd -s "$admin_pw")|" \
        "$schemas/slapd.conf.in" >"$dir/slapd.conf"
    {
        cat "$schemas/base.ldif" "$schemas/people.ldif" | sed "s/@NOW@/$now/g" | hash_passwords
        echo
        if [ "$extra" -gt 0 ]; then extra_users "$extra"; fi
    } >"$dir/seed.ldif"
    /usr/sbin/slapadd -q -f "$dir/slapd.conf" -l "$dir/seed.ldif"
    mkdir -p "$dir/slapd.d.tmp"
    /usr/sbin/slaptest -Q -f "$dir/slapd.conf" -F "$dir/slapd.d.tmp"

    cp "$schemas/groups.ldif" "$dir/groups.ldif"
    if [ "$extra" -gt 0 ]; then
        echo >>"$dir/groups.ldif"
        extra_groups "$extra" >>"$dir/groups.ldif"
    fi
    socket=$dir/ldapi
    url="ldapi://${socket//\//%2F}"
    /usr/sbin/slapd -d 0 -F "$dir/slapd.d.tmp" -h "$url" 2>"$dir/build.log" &
    pid=$!
    tries=0
    until /usr/bin/ldapwhoami -x -H "$url" >/dev/null 2>&1; do
        tries=$((tries + 1))
        if [ $tries -gt 400 ] || ! kill -0 $pid 2>/dev/null; then
            echo "the build slapd did not start; see $dir/build.log" >&2
            kill $pid 2>/dev/null || true
            exit 1
        fi
        sleep 0.05
    done
    if ! /usr/bin/ldapmodify -a -x -H "$url" -D "$admin_dn" -w "$admin_pw" -f "$dir/groups.ldif" >>"$dir/build.log" 2>&1; then
        echo "adding groups failed; see $dir/build.log" >&2
        kill $pid
        exit 1
    fi
    kill $pid
    wait $pid || true
    # Only a complete instance gets the name a restart looks for.
    mv "$dir/slapd.d.tmp" "$dir/slapd.d"
}

if [ ! -d "$dir/slapd.d" ]; then
    build
fi
exec /usr/sbin/slapd -d "$debug" -F "$dir/slapd.d" -h "ldap://127.0.0.1:$port/"
