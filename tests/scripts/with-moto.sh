#!/usr/bin/env bash
# Runs a command with a moto server (S3, SQS, Secrets Manager) on loopback, then stops it.
#   tests/scripts/with-moto.sh cargo nextest run --workspace
# Exports AWS_ENDPOINT_URL and test credentials for the command, and TAPLINE_TEST_MOTO_URL.
# moto comes from the machine's Python when it has it, else from a venv in .venv/ (pip).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)

python=python3
if ! "$python" -c 'import moto.server, flask' >/dev/null 2>&1; then
  if [ ! -x "$root/.venv/bin/python" ]; then
    echo "with-moto: creating $root/.venv with moto[server]" >&2
    python3 -m venv "$root/.venv"
  fi
  python="$root/.venv/bin/python"
  "$python" -c 'import moto.server, flask' >/dev/null 2>&1 \
    || "$python" -m pip install -q "moto[server]>=5,<6"
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp /tmp/tapline-moto.XXXXXX)
"$python" -m moto.server -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
pid=$!
stop() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -f "$log"
}
trap stop EXIT

# Ready when it answers; bounded, so a broken install fails instead of hanging.
python3 "$root/tests/scripts/wait-for-http.py" "http://127.0.0.1:$port/moto-api/" 60 moto \
  || { cat "$log" >&2; exit 1; }

export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
export TAPLINE_TEST_MOTO_URL="$AWS_ENDPOINT_URL"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
echo "with-moto: moto $("$python" -c 'import moto; print(moto.__version__)') on $AWS_ENDPOINT_URL" >&2
"$@"
