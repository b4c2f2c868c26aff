#!/bin/bash
# Starts a single-node Garage with one key and one bucket, then prints "podinit-test-s3: ready".
# Env: S3_KEY_ID (GK + 24 hex), S3_SECRET (64 hex), S3_BUCKET (default "test"),
# S3_PUBLIC_BUCKET (optional: a bucket served anonymously by the website endpoint, port 3902).
# Ports: 3900 S3 API (region "garage"), 3902 website endpoint.
set -euo pipefail
conf=/etc/garage.toml
mkdir -p /var/lib/garage/meta /var/lib/garage/data
cat >"$conf" <<TOML
metadata_dir = "/var/lib/garage/meta"
data_dir = "/var/lib/garage/data"
db_engine = "lmdb"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:3901"
rpc_public_addr = "127.0.0.1:3901"
rpc_secret = "$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"

[s3_api]
s3_region = "garage"
api_bind_addr = "0.0.0.0:3900"
root_domain = ".s3.garage.localhost"

[s3_web]
bind_addr = "0.0.0.0:3902"
root_domain = ".web.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:3903"
admin_token = "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
TOML
g() { garage -c "$conf" "$@"; }
garage -c "$conf" server &
server=$!
until g status >/dev/null 2>&1; do sleep 0.2; done
node=$(g node id -q | cut -d@ -f1)
g layout assign -z dc1 -c 1G "$node" >/dev/null
g layout apply --version 1 >/dev/null
g key import --yes -n test "${S3_KEY_ID:?}" "${S3_SECRET:?}" >/dev/null
bucket=${S3_BUCKET:-test}
g bucket create "$bucket" >/dev/null
g bucket allow --read --write --owner "$bucket" --key test >/dev/null
if [[ -n ${S3_PUBLIC_BUCKET:-} ]]; then
  g bucket create "$S3_PUBLIC_BUCKET" >/dev/null
  g bucket allow --read --write --owner "$S3_PUBLIC_BUCKET" --key test >/dev/null
  g bucket website --allow "$S3_PUBLIC_BUCKET" >/dev/null
fi
echo "podinit-test-s3: ready"
wait "$server"
