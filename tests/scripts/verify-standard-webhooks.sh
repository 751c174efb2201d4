#!/usr/bin/env bash
# Verifies deliveries of the relay's HTTP destination with the Standard Webhooks libraries a
# receiver would use: `standardwebhooks` and `svix` from PyPI, in .venv/ (created if missing).
#   tests/scripts/verify-standard-webhooks.sh < deliveries.json
# Input and output: see tests/scripts/verify_standard_webhooks.py.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
check='import standardwebhooks, svix.webhooks'
python=python3
if ! "$python" -c "$check" >/dev/null 2>&1; then
  if [ ! -x "$root/.venv/bin/python" ]; then
    echo "verify-standard-webhooks: creating $root/.venv" >&2
    python3 -m venv "$root/.venv"
  fi
  python="$root/.venv/bin/python"
  "$python" -c "$check" >/dev/null 2>&1 \
    || "$python" -m pip install -q "standardwebhooks>=1.0,<2" "svix>=1.0,<3" >&2
fi
exec "$python" "$root/tests/scripts/verify_standard_webhooks.py"
