#!/usr/bin/env bash
# ts-example.sh: what CI runs for the TypeScript client. Starts `shopbus dev`
# on free ports and a throwaway PostgreSQL schema, typechecks clients/ts and
# runs clients/ts/place-order.ts against it, then cleans up.
set -euo pipefail

cd "$(git rev-parse --show-toplevel)"
[ -d node_modules ] || npm ci --no-audit --no-fund

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

tmp=$(mktemp -d)
schema="ts_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
db_url=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/shopbus}
addr="127.0.0.1:$(free_port)"
nats_port=$(free_port)
pid=

cleanup() {
	status=$?
	if [ -n "$pid" ]; then
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	if [ "$status" -ne 0 ] && [ -f "$tmp/server.log" ]; then
		echo "--- shopbus dev log ---" >&2
		cat "$tmp/server.log" >&2
	fi
	psql "$db_url" -q -v ON_ERROR_STOP=1 \
		-c "DROP SCHEMA IF EXISTS ${schema}_order CASCADE" \
		-c "DROP SCHEMA IF EXISTS ${schema}_inventory CASCADE" >/dev/null 2>&1 ||
		echo "warning: could not drop schemas ${schema}_order, ${schema}_inventory" >&2
	rm -rf "$tmp"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

go build -o "$tmp/shopbus" ./cmd/shopbus
"$tmp/shopbus" dev --addr "$addr" --nats-port "$nats_port" --data-dir "$tmp/data" --schema "$schema" \
	>"$tmp/server.log" 2>&1 &
pid=$!

echo "waiting for the gateway at http://$addr (schema $schema)"
deadline=$((SECONDS + 60))
until curl -sf -o /dev/null --max-time 2 "http://$addr/readyz"; do
	kill -0 "$pid" 2>/dev/null || { echo "shopbus dev exited early" >&2; exit 1; }
	[ "$SECONDS" -lt "$deadline" ] || { echo "gateway did not answer within 60 s" >&2; exit 1; }
	sleep 0.5
done

npx tsc -p clients/ts/tsconfig.json
SHOPBUS_URL="http://$addr" SHOPBUS_TOKEN_FILE="$tmp/data/auth/customer.jwt" SHOPBUS_ADMIN_TOKEN_FILE="$tmp/data/auth/admin.jwt" \
	npx tsx clients/ts/place-order.ts
