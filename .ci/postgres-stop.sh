#!/usr/bin/env bash
# Stop and remove the throwaway cluster that .ci/postgres.sh started (no-op when absent).
set -euo pipefail
PORT="${TEST_POSTGRES_PORT:-55432}"
CLUSTER=telemetry_ci  # the name .ci/postgres.sh gave the cluster on this port
[ "$PORT" = 55432 ] || CLUSTER="telemetry_ci_$PORT"
for VERSION in $(pg_lsclusters -h 2>/dev/null | awk -v c="$CLUSTER" '$2==c {print $1}'); do
    pg_dropcluster --stop "$VERSION" "$CLUSTER" >&2
    echo "postgres-stop.sh: dropped cluster $VERSION/$CLUSTER" >&2
done
