#!/usr/bin/env bash
# A/B: shopbus dev --insecure over plain HTTP vs shopbus dev with JWT auth and TLS, same binary, one session.
set -uo pipefail
cd "$(git rev-parse --show-toplevel)"
go build -o /tmp/shopbus ./cmd/shopbus || exit 1
dir=/tmp/e2eauth; rm -rf $dir; mkdir -p $dir
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=127.0.0.1 \
  -addext "subjectAltName=IP:127.0.0.1" -keyout $dir/key.pem -out $dir/cert.pem 2>/dev/null
db='postgres://postgres@127.0.0.1:5432/shopbus_bench?sslmode=disable'
psql -h 127.0.0.1 -U postgres -tc "SELECT 1 FROM pg_database WHERE datname='shopbus_bench'" | grep -q 1 || createdb -h 127.0.0.1 -U postgres shopbus_bench
run() { # name, extra dev flags..., then bench env
  local name=$1; shift
  local schema="e2e_${name}_$RANDOM"
  /tmp/shopbus dev --data-dir $dir/$name --schema $schema --database-url "$db" --log-level warn "$@" >$dir/$name.log 2>&1 &
  local pid=$!
  for i in $(seq 1 120); do curl -sfk -o /dev/null https://127.0.0.1:8080/readyz 2>/dev/null && break; curl -sf -o /dev/null http://127.0.0.1:8080/readyz 2>/dev/null && break; sleep 0.5; done
  echo "== $name"
  if [[ "$name" == insecure* ]]; then
    /tmp/shopbus bench --clients 64 --duration 20s --warmup 3s 2>&1
  else
    SHOPBUS_ADMIN_TOKEN_FILE=$dir/$name/auth/admin.jwt /tmp/shopbus bench --url https://127.0.0.1:8080 --ca $dir/cert.pem --clients 64 --duration 20s --warmup 3s 2>&1
  fi
  kill -TERM $pid; wait $pid
  psql -h 127.0.0.1 -U postgres -d shopbus_bench -tc "SELECT 'pending', count(*) FROM ${schema}_order.orders WHERE status='PENDING'"
  psql -h 127.0.0.1 -U postgres -d shopbus_bench -qc "DROP SCHEMA ${schema}_order CASCADE; DROP SCHEMA ${schema}_inventory CASCADE" 2>/dev/null
}
${FLOOR:-../shared/bench/floor/run} 16 20
run insecure --insecure
run authtls --tls-cert $dir/cert.pem --tls-key $dir/key.pem
run insecure2 --insecure
run authtls2 --tls-cert $dir/cert.pem --tls-key $dir/key.pem
${FLOOR:-../shared/bench/floor/run} 16 20
