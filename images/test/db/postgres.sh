#!/bin/bash
# Starts PostgreSQL 15 listening on all addresses, with password auth over TCP.
# Env: PG_PASSWORD (for user postgres; default "secret"), PG_DATABASE (created; default "app"),
# PG_START_DELAY (seconds to sleep before starting; default 0) to test waiting.
set -euo pipefail
sleep "${PG_START_DELAY:-0}"
export PATH=/usr/lib/postgresql/15/bin:$PATH
mkdir -p /run/postgresql /var/lib/pg && chown postgres:postgres /run/postgresql /var/lib/pg
pwfile=$(mktemp) && echo "${PG_PASSWORD:-secret}" >"$pwfile" && chown postgres "$pwfile"
su postgres -c "initdb -D /var/lib/pg/data -A scram-sha-256 -U postgres --pwfile=$pwfile" >/dev/null
rm -f "$pwfile"
echo "host all all 0.0.0.0/0 scram-sha-256" >>/var/lib/pg/data/pg_hba.conf
echo "host all all ::/0 scram-sha-256" >>/var/lib/pg/data/pg_hba.conf
su postgres -c "pg_ctl -D /var/lib/pg/data -o '-c listen_addresses=localhost' -w start" >/dev/null
PGPASSWORD="${PG_PASSWORD:-secret}" psql -h localhost -U postgres -qc "CREATE DATABASE ${PG_DATABASE:-app}" >/dev/null
su postgres -c "pg_ctl -D /var/lib/pg/data -m fast -w stop" >/dev/null
echo "podinit-test-db: postgres ready to start"
exec su postgres -c "exec postgres -D /var/lib/pg/data -c listen_addresses='*' -c fsync=off -c synchronous_commit=off"
