#!/bin/sh
# Make sure a PostgreSQL the tests may create databases on is reachable, and print its admin URL.
# Uses 127.0.0.1:5432 when it accepts the postgres user without a password; otherwise
# starts a private throw-away cluster (trust auth, loopback only) under $ROLLCALL_PG_DIR.
set -eu

# -w: never prompt. Debian's own cluster asks for a password on 127.0.0.1, and a
# prompt on the terminal would hang `make test` instead of falling back.
probe() {
    PGCONNECT_TIMEOUT=5 psql -w "$1" -Atqc "select 1" >/dev/null 2>&1
}

system_url="postgresql://postgres@127.0.0.1:5432/postgres"
if probe "$system_url"; then
    echo "$system_url"
    exit 0
fi

# A local cluster that exists but is stopped: start it and try again.
if command -v pg_lsclusters >/dev/null 2>&1; then
    pg_lsclusters -h 2>/dev/null | while read -r ver name port status _; do
        if [ "$port" = 5432 ] && [ "$status" != online ]; then
            pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start >&2 || true
        fi
    done
    if probe "$system_url"; then
        echo "$system_url"
        exit 0
    fi
fi

# Fall back to a private cluster of our own on port 55432.
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$bindir" ]; then
    echo "PostgreSQL is not installed: run scripts/install-system-deps.sh test" >&2
    exit 1
fi
dir=${ROLLCALL_PG_DIR:-/tmp/rollcall-test-pg}
port=55432
url="postgresql://postgres@127.0.0.1:$port/postgres"
if probe "$url"; then
    echo "$url"
    exit 0
fi
run() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
if [ ! -f "$dir/PG_VERSION" ]; then
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    run "$bindir/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 >&2
fi
run "$bindir/pg_ctl" -D "$dir" -l "$dir/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir" start >&2
probe "$url" || { echo "PostgreSQL did not start; see $dir/server.log" >&2; exit 1; }
echo "$url"
