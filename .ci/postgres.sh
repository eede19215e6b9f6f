#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster for the test suite and print, on stdout, ONE line:
#   export TEST_POSTGRES_URL=postgresql://USER:PASSWORD@127.0.0.1:PORT/DB
# so that .ci/run can do:  eval "$(bash .ci/postgres.sh)"
# Everything else goes to stderr. Run as root on Debian: installs the postgresql package
# only when no PostgreSQL server binaries are present, then creates (or reuses) a cluster of
# its own, "telemetry_ci" on port 55432 (the default) or "telemetry_ci_PORT" on port
# $TEST_POSTGRES_PORT, so the machine's default "main" cluster is left alone. Stop and remove it
# with .ci/postgres-stop.sh (given the same TEST_POSTGRES_PORT).
set -euo pipefail
# fd 3 is the caller's stdout (for the one export line); everything else goes to stderr.
# Commands that may leave a daemon behind (apt-get's postinst, pg_createcluster,
# pg_ctlcluster) run with "3>&-": a daemon holding the pipe open would make the caller's
# "$(...)" wait forever.
exec 3>&1 1>&2

PORT="${TEST_POSTGRES_PORT:-55432}"
# One cluster per port: on another port (a developer's trial run beside a cluster already serving
# 55432) the script makes, and postgres-stop.sh drops, a cluster of its own, never the other one.
CLUSTER=telemetry_ci
[ "$PORT" = 55432 ] || CLUSTER="telemetry_ci_$PORT"
DB=telemetry_test
ROLE=telemetry_test

if [ "$(id -u)" != 0 ]; then
    echo "postgres.sh: must run as root (it installs packages and runs pg_ctlcluster)" >&2
    exit 1
fi

if ! command -v pg_createcluster >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "postgres.sh: installing PostgreSQL from the system packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update 3>&-
    apt-get install -y --no-install-recommends postgresql 3>&-
fi

VERSION="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$VERSION $CLUSTER"; then
    # listen_addresses stays at its default (localhost). fsync off: a test cluster that is
    # thrown away after the run needs speed, not durability.
    pg_createcluster "$VERSION" "$CLUSTER" --port "$PORT" --start-conf manual \
        -o fsync=off -o synchronous_commit=off \
        -o full_page_writes=off -o max_connections=200 3>&-
fi
PORT="$(pg_lsclusters -h | awk -v v="$VERSION" -v c="$CLUSTER" '$1==v && $2==c {print $3}')"
if ! pg_lsclusters -h | awk -v v="$VERSION" -v c="$CLUSTER" '$1==v && $2==c {print $4}' | grep -q online; then
    pg_ctlcluster "$VERSION" "$CLUSTER" start 3>&-
fi

for _ in $(seq 1 60); do
    if "/usr/lib/postgresql/$VERSION/bin/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
        break
    fi
    sleep 0.5
done
"/usr/lib/postgresql/$VERSION/bin/pg_isready" -h 127.0.0.1 -p "$PORT" >&2

PASSWORD="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
# Peer authentication over the Unix socket as the postgres OS user; fresh database each run.
runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -p "$PORT" -d postgres <<SQL >&2
DROP DATABASE IF EXISTS $DB;
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') THEN
    CREATE ROLE $ROLE LOGIN;
  END IF;
END \$\$;
ALTER ROLE $ROLE WITH LOGIN PASSWORD '$PASSWORD';
CREATE DATABASE $DB OWNER $ROLE;
SQL

echo "postgres.sh: PostgreSQL $VERSION cluster $CLUSTER ready on 127.0.0.1:$PORT" >&2
echo "export TEST_POSTGRES_URL=postgresql://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DB" >&3
