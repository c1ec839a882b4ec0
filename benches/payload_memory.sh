#!/usr/bin/env bash
# Payload mode memory: the release handler's peak RSS (VmHWM) for one ~94 MB invocation
# envelope, with INGEST_HMAC_SECRET set. A fresh handler process per scenario:
#   unsigned     Body is a JSON array of numbers (not a string); no signature    -> 401
#   wrong-hmac   Body is a string holding one event with a numeric array;
#                a fresh t= but a wrong v1=                                       -> 401
#   signed       Body is a string holding one event with a long string field;
#                a valid signature (so it is also parsed and stored)             -> 200
# Not part of `cargo test`. Needs bash, coreutils, curl and openssl.
#
#   cargo build --release && benches/payload_memory.sh [handler binary] [MB]
set -euo pipefail
cd "$(dirname "$0")/.."
handler=$(realpath "${1:-target/release/handler}")
megabytes=${2:-94}
secret=correct-horse-battery-staple-42
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT

count=$((megabytes * 1024 * 1024 / 2))
zeros() { { yes '0,' || true; } | head -n "$count" | tr -d '\n'; printf '0'; }
event_prefix='{"_id":{"_data":"82AA"},"operationType":"insert","clusterTime":{"$timestamp":{"t":1700000000,"i":1}},"ns":{"db":"d","coll":"c"},"documentKey":{"_id":1},"fullDocument":{"_id":1,'
envelope_head='{"Data":{"req":{"Url":"http://localhost:7071/api/ingest","Method":"POST","Query":{},"Headers":{"Content-Type":["application/json"]'
envelope_tail='"Params":{}}},"Metadata":{"sys":{"MethodName":"ingest"}}}'

# An envelope: $1 the header fields to add, $2 a file holding the JSON value of Body.
envelope() {
    printf '%s%s},"Body":' "$envelope_head" "$1"
    cat "$2"
    printf ',%s' "$envelope_tail"
}
# A body as a JSON string literal (only the event's own quotes need escaping here).
quoted() { printf '"'; sed 's/"/\\"/g' "$1" | tr -d '\n'; printf '"'; }

{ printf '['; zeros; printf ']'; } >"$work/array.json"
envelope '' "$work/array.json" >"$work/unsigned.json"

{ printf '%s"a":[' "$event_prefix"; zeros; printf ']}}'; } >"$work/numbers-event.json"
quoted "$work/numbers-event.json" >"$work/numbers-body.json"
t=$(date +%s)
envelope ",\"X-Ingest-Signature\":[\"t=$t,v1=$(printf '0%.0s' $(seq 64))\"]" "$work/numbers-body.json" \
    >"$work/wrong-hmac.json"

{ printf '%s"s":"' "$event_prefix"; head -c "$((count * 2))" /dev/zero | tr '\0' x; printf '"}}'; } \
    >"$work/string-event.json"
quoted "$work/string-event.json" >"$work/string-body.json"
t=$(date +%s)
v1=$({ printf '%s.' "$t"; cat "$work/string-event.json"; } | openssl dgst -sha256 -hmac "$secret" -r | cut -d' ' -f1)
envelope ",\"X-Ingest-Signature\":[\"t=$t,v1=$v1\"]" "$work/string-body.json" >"$work/signed.json"

vmhwm_mib() { awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }

echo "handler: $handler"
echo "| scenario | envelope MB | caller status | peak RSS MiB | peak / envelope |"
echo "|---|---:|---:|---:|---:|"
for scenario in unsigned wrong-hmac signed; do
    rm -rf "$work/lake"
    env -i PATH="$PATH" FUNCTIONS_CUSTOMHANDLER_PORT=0 LOG_FORMAT=json RUST_LOG=info \
        LOCAL_LAKE_DIR="$work/lake" INGEST_HMAC_SECRET="$secret" "$handler" >"$work/log" 2>&1 &
    pid=$!
    address=
    for _ in $(seq 100); do
        address=$(sed -n 's/.*"message":"ready".*"address":"\([^"]*\)".*/\1/p; s/.*"address":"\([^"]*\)".*"message":"ready".*/\1/p' "$work/log" | head -n 1)
        [ -n "$address" ] && break
        sleep 0.1
    done
    [ -n "$address" ] || { echo "the handler did not start:"; cat "$work/log"; exit 1; }
    file="$work/$scenario.json"
    curl -s -o "$work/answer" -H 'Content-Type: application/json' --data-binary "@$file" "http://$address/ingest"
    status=$(grep -o '"statusCode":[0-9]*' "$work/answer" | cut -d: -f2)
    bytes=$(stat -c %s "$file")
    peak=$(vmhwm_mib "$pid")
    awk -v s="$scenario" -v b="$bytes" -v c="$status" -v p="$peak" \
        'BEGIN { printf "| %s | %.1f | %s | %d | %.2f |\n", s, b / 1e6, c, p, p * 1048576 / b }'
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
done
