#!/usr/bin/env bash
# Load figure of the webhook relay: wrk against `tapline relay serve` for DURATION while both
# destinations of the route are down (connection refused, so the worker keeps retrying), then
# the number of payloads answered 200 against the number stored in the queue.
# Usage: tests/bench/relay_load.sh path/to/tapline   (DURATION=30s CONNECTIONS=32 THREADS=2)
set -euo pipefail
tapline=${1:?usage: $0 path/to/tapline}
duration=${DURATION:-30s}
connections=${CONNECTIONS:-32}
threads=${THREADS:-2}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk (Debian/Ubuntu package)" >&2; exit 1; }

dir=$(mktemp -d)
server=
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

cat > "$dir/relay.toml" <<'TOML'
[[routes]]
name = "alerts"
auth = { header = "X-Tapline-Token", secret_env = "BENCH_TOKEN" }
[[routes.destinations]]
type = "slack"
url_env = "BENCH_SLACK_URL"
[[routes.destinations]]
type = "http"
url_env = "BENCH_HTTP_URL"
signing_secret_env = "BENCH_SIGNING_SECRET"
TOML
cat > "$dir/post.lua" <<'LUA'
-- Every request a distinct CleverTap-shaped body, so that none is deduplicated.
local next_id = 0
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end
local counter = 0
function request()
  counter = counter + 1
  local body = string.format(
    '{"targetId":%d,"key_values":{"event":"Charged","n":"%d"},"profiles":{"identity":"u%d-%d"}}',
    tid, counter, tid, counter)
  return wrk.format("POST", "/hooks/alerts",
    {["X-Tapline-Token"] = "bench-token-0123456789abcdef0123456", ["Content-Type"] = "application/json"}, body)
end
LUA

# Port 9 (discard) is closed on loopback: every delivery attempt fails and is retried.
BENCH_TOKEN=bench-token-0123456789abcdef0123456 BENCH_SLACK_URL=http://127.0.0.1:9/slack \
  BENCH_HTTP_URL=http://127.0.0.1:9/http BENCH_SIGNING_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw \
  "$tapline" relay serve --config "$dir/relay.toml" --listen 127.0.0.1:0 \
  --state-dir "$dir/state" > "$dir/serve.out" 2> "$dir/serve.err" &
server=$!
for _ in $(seq 50); do grep -q listening "$dir/serve.out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^tapline relay listening on //p' "$dir/serve.out")
[ -n "$url" ] || { cat "$dir/serve.err" >&2; exit 1; }

# Baseline in the same run: the same server answering GET /healthz (no auth, no body, nothing
# stored), so the figure below reads as "what accepting costs" on this machine today.
wrk -t"$threads" -c"$connections" -d"${BASELINE_DURATION:-10s}" --latency "$url/healthz" > "$dir/baseline.out"
wrk -t"$threads" -c"$connections" -d"$duration" --latency -s "$dir/post.lua" "$url" | tee "$dir/wrk.out"
peak_kib=$(awk '/VmHWM/ {print $2}' "/proc/$server/status" 2>/dev/null || echo 0)
kill -TERM "$server"; wait "$server" || true; server=

requests=$(awk '/requests in/ {print $1}' "$dir/wrk.out")
non2xx=$(awk '/Non-2xx/ {print $NF}' "$dir/wrk.out")
answered=$(( requests - ${non2xx:-0} ))
stored=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from relay_payloads").fetchone()[0])' "$dir/state/relay-queue.sqlite")
lost=$(( answered > stored ? answered - stored : 0 ))
# Stored can exceed answered by the requests in flight when wrk stopped counting.
echo "answered 200: $answered, stored: $stored, lost: $lost"
printf '%-32s %12s %9s %9s\n' "" "requests/s" "p50" "p99"
for run in "baseline: GET /healthz:baseline.out" "accept: POST /hooks (stored):wrk.out"; do
  label=${run%:*}; file=$dir/${run##*:}
  printf '%-32s %12s %9s %9s\n' "$label" "$(awk '/Requests\/sec/ {print $2}' "$file")" \
    "$(awk '$1 == "50%" {print $2}' "$file")" "$(awk '$1 == "99%" {print $2}' "$file")"
done
echo "server peak RSS: $(( peak_kib / 1024 )) MiB (VmHWM, both runs)"
[ "$lost" -eq 0 ]
