#!/usr/bin/env bash
# Runs a command with bqemulator (a third-party BigQuery emulator: REST API, GoogleSQL run by
# DuckDB) on loopback, then stops it.
#   tests/scripts/with-bqemulator.sh cargo nextest run -p tapline-tests -E 'test(/^warehouse_bigquery::/)'
# Exports TAPLINE_TEST_BQEMULATOR_URL. bqemulator and Google's client library come from PyPI,
# pinned, installed into .venv/ when missing; bqemulator is started by
# tests/scripts/bqemulator_launch.py, which patches the few places where it departs from
# BigQuery's documented behaviour.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
version=1.4.0
# DuckDB needs numpy for the emulator's Python functions; bqemulator lists it only as an extra.
numpy=2.4.6

if [ ! -x "$root/.venv/bin/python" ]; then
  echo "with-bqemulator: creating $root/.venv" >&2
  python3 -m venv "$root/.venv"
fi
python="$root/.venv/bin/python"
if [ "$("$python" -c 'import bqemulator; print(bqemulator.__version__)' 2>/dev/null)" != "$version" ]; then
  "$python" -m pip install -q "bqemulator==$version" "numpy==$numpy"
fi
# Google's client, for the test that reads a typed view as a BI tool's connector does
# (tests/scripts/bigquery_client_reads_typed_view.py). 3.30.0 is the newest that accepts the
# packaging 23.x checkov (same .venv) pins; newer ones would upgrade it under checkov.
client=3.30.0
if [ "$("$python" -c 'from google.cloud import bigquery; print(bigquery.__version__)' 2>/dev/null)" != "$client" ]; then
  "$python" -m pip install -q "google-cloud-bigquery==$client" "packaging==23.2"
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port=$(free_port)
log=$(mktemp /tmp/tapline-bqemulator.XXXXXX)
# Uploads are staged on disk while a load job reads them: in a directory of this run's own.
uploads=$(mktemp -d /tmp/tapline-bqemulator-uploads.XXXXXX)
# Ephemeral (in memory); the gRPC Storage API is unused but always started, so on a port of its
# own; no Avro extension (a download; Tapline loads NDJSON); no telemetry export.
BQEMU_ENABLE_FORMAT_EXTENSIONS=false BQEMU_UPLOAD_STAGING_DIR="$uploads" OTEL_SDK_DISABLED=true \
  "$python" "$root/tests/scripts/bqemulator_launch.py" \
  --rest-host 127.0.0.1 --rest-port "$port" --grpc-host 127.0.0.1 --grpc-port 0 \
  --ephemeral --project tapline-test --log-level warning >"$log" 2>&1 &
pid=$!
stop() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$log" "$uploads"
}
trap stop EXIT

# Ready when it answers; bounded, so a broken install fails instead of hanging.
python3 "$root/tests/scripts/wait-for-http.py" "http://127.0.0.1:$port/healthz" 60 bqemulator \
  || { cat "$log" >&2; exit 1; }

export TAPLINE_TEST_BQEMULATOR_URL="http://127.0.0.1:$port"
echo "with-bqemulator: bqemulator $version on $TAPLINE_TEST_BQEMULATOR_URL" >&2
"$@"
