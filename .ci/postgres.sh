#!/usr/bin/env bash
# A throwaway PostgreSQL server for the PostgreSQL run-storage tests and benchmarks.
#
#   .ci/postgres.sh install      install Debian's `postgresql` when initdb/pg_ctl are missing
#   .ci/postgres.sh start        initdb into a new temporary directory, start on a free local
#                                port; prints ASYNCDAG_TEST_POSTGRES_URL=... and
#                                ASYNCDAG_TEST_POSTGRES_DIR=... (one NAME=value a line)
#   .ci/postgres.sh stop DIR     stop the server and delete DIR
#   .ci/postgres.sh down DIR     stop the server, keep its data (the fault tests use it)
#   .ci/postgres.sh up DIR       start it again on the same port
#   .ci/postgres.sh restart DIR  restart it (connections are dropped)
#
# initdb refuses to run as root: as root the server runs as the `postgres` system user
# (Debian's package creates it), otherwise as the current user.  It listens on 127.0.0.1
# only, trusts local connections, and trades durability for speed (fsync=off): it holds
# test data for minutes, never anything to keep.  Set PG_BIN to use other binaries.
set -euo pipefail

MARKER=".asyncdag-throwaway-postgres"

die() {
    echo "postgres.sh: $*" >&2
    exit 1
}

find_bin() {
    if [ -n "${PG_BIN:-}" ]; then
        [ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_ctl" ] && { echo "$PG_BIN"; return 0; }
        return 1
    fi
    # Debian keeps the server binaries out of PATH, under /usr/lib/postgresql/VERSION/bin.
    local newest
    newest="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [ -n "$newest" ] && [ -x "$newest/initdb" ] && [ -x "$newest/pg_ctl" ]; then
        echo "$newest"
        return 0
    fi
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v pg_ctl)"
        return 0
    fi
    return 1
}

# Run a command as the server's owner: `postgres` when we are root, else ourselves.
as_owner() {
    if [ "$(id -u)" != "0" ]; then
        "$@"
    elif command -v runuser >/dev/null 2>&1; then
        runuser -u postgres -- "$@"
    else
        su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
    fi
}

install() {
    if find_bin >/dev/null; then
        return 0
    fi
    local sudo=""
    if [ "$(id -u)" != "0" ]; then
        command -v sudo >/dev/null 2>&1 || die "initdb/pg_ctl not found and no sudo to install postgresql"
        sudo="sudo"
    fi
    echo "installing Debian's postgresql for the PostgreSQL storage tests" >&2
    # No default cluster: we only need the binaries, and a server of our own per run.
    $sudo mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" | $sudo tee /etc/postgresql-common/createcluster.conf >/dev/null
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
        -o Dpkg::Options::=--force-confold postgresql >/dev/null
    find_bin >/dev/null || die "installed postgresql, but still found no initdb/pg_ctl"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

checked_dir() {
    local dir="${1:-}"
    [ -n "$dir" ] || die "say which server: $0 ${2:-stop} DIR (the DIR that start printed)"
    [ -f "$dir/$MARKER" ] || die "$dir is not a server started by $0"
    echo "$dir"
}

pg_ctl_in() {
    local bin dir="$1"
    shift
    bin="$(find_bin)" || die "pg_ctl not found; run: $0 install"
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" "$@"
}

start() {
    local bin dir port
    bin="$(find_bin)" || die "initdb/pg_ctl not found (run: $0 install, or set PG_BIN)"
    if [ "$(id -u)" = "0" ] && ! id postgres >/dev/null 2>&1; then
        die "running as root and there is no 'postgres' user to run the server as (initdb refuses root)"
    fi
    dir="$(mktemp -d "${TMPDIR:-/tmp}/asyncdag-pg.XXXXXX")"
    touch "$dir/$MARKER"
    if [ "$(id -u)" = "0" ]; then
        chown postgres: "$dir"
    fi
    chmod 700 "$dir"
    if ! as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale -N \
        >"$dir/initdb.log" 2>&1; then
        cat "$dir/initdb.log" >&2
        rm -rf "$dir"
        die "initdb failed"
    fi
    for attempt in 1 2 3; do
        port="$(free_port)"
        as_owner sh -c "cat >> '$dir/data/postgresql.conf'" <<EOF

# asyncdag throwaway test server (attempt $attempt)
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
        if pg_ctl_in "$dir" -w -t 60 start >/dev/null; then
            echo "ASYNCDAG_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:$port/postgres"
            echo "ASYNCDAG_TEST_POSTGRES_DIR=$dir"
            return 0
        fi
        echo "postgres.sh: start on port $port failed (attempt $attempt):" >&2
        tail -n 5 "$dir/server.log" >&2 || true
    done
    rm -rf "$dir"
    die "could not start PostgreSQL"
}

command="${1:-}"
case "$command" in
install) install ;;
start) start ;;
stop)
    dir="$(checked_dir "${2:-}" stop)"
    pg_ctl_in "$dir" -w -m fast stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
down)
    dir="$(checked_dir "${2:-}" down)"
    pg_ctl_in "$dir" -w -m fast stop >/dev/null
    ;;
up)
    dir="$(checked_dir "${2:-}" up)"
    pg_ctl_in "$dir" -w -t 60 start >/dev/null
    ;;
restart)
    dir="$(checked_dir "${2:-}" restart)"
    pg_ctl_in "$dir" -w -t 60 -m fast restart >/dev/null
    ;;
*)
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
