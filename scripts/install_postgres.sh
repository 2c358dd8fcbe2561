#!/usr/bin/env bash
# Make sure a PostgreSQL server (Debian package `postgresql`) is available for the tests that
# run Optuna's RDBStorage against a real throw-away server (tests/postgres_server.py).
# Idempotent and never fails the build: it always exits 0. Without a server those tests skip.
# A system cluster that Debian's package may start on port 5432 is harmless; the tests start
# their own cluster on a free port and do not use it.

# shellcheck source=scripts/apt_install.sh
source "$(dirname "$0")/apt_install.sh"

say() { echo "install_postgres: $*"; }

found_server() {
    local dir
    # Debian layout: /usr/lib/postgresql/<major>/bin; take the highest major version.
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -V -r); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            echo "$dir"
            return 0
        fi
    done
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
        return 0
    fi
    return 1
}

report_found() {
    local bindir="$1"
    say "PostgreSQL server found in $bindir: $("$bindir/initdb" --version 2>/dev/null || echo 'version unknown')"
}

main() {
    local bindir
    if bindir="$(found_server)"; then
        report_found "$bindir"
        return 0
    fi

    apt_install PostgreSQL postgresql || return 0

    if bindir="$(found_server)"; then
        report_found "$bindir"
    else
        say "postgresql was installed but initdb/pg_ctl were not found; the PostgreSQL tests will be skipped."
    fi
    return 0
}

main "$@"
exit 0
