#!/usr/bin/env bash
# Makes headless Chromium available for the report test: Debian's `chromium` package, installed
# with apt-get when missing and running as root (as `make test` does for PostgreSQL). Prints the
# browser's path. Idempotent.
set -euo pipefail
for candidate in "${TAPLINE_TEST_CHROMIUM:-}" chromium chromium-browser google-chrome; do
  if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1; then
    command -v "$candidate"
    exit 0
  fi
done
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure-chromium: installing Debian's chromium (once, about a minute)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >&2 \
    || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >&2; }
  command -v chromium
  exit 0
fi
echo "ensure-chromium: no chromium; install Debian's chromium package (apt-get install chromium)" >&2
exit 1
