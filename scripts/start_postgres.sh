#!/usr/bin/env bash
# Start a local PostgreSQL (Debian's package) for the test suite and print the URL to use:
#   export VSEARCH_TEST_PG_URL=$(scripts/start_postgres.sh)
# Listens on 127.0.0.1 only. Installs the server if it is missing (needs root and apt).
set -euo pipefail
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
fi
ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h 2>/dev/null | grep -q "^$ver main"; then
  pg_createcluster "$ver" main >&2
fi
pg_ctlcluster "$ver" main start >&2 2>/dev/null || true
for _ in $(seq 1 30); do
  su postgres -c "psql -qtAc 'select 1'" >/dev/null 2>&1 && break
  sleep 1
done
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='vsearch'\"" | grep -q 1 ||
  su postgres -c "psql -qc \"CREATE ROLE vsearch LOGIN PASSWORD 'vsearch' CREATEDB\"" >&2
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='vsearch_test'\"" | grep -q 1 ||
  su postgres -c "createdb -O vsearch vsearch_test" >&2
echo "postgresql+psycopg://vsearch:vsearch@127.0.0.1:5432/vsearch_test"
