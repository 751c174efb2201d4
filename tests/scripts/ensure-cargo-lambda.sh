#!/usr/bin/env bash
# Makes `cargo lambda` available: cargo-lambda and zig (for cross-linking) from PyPI into
# .venv/, and the arm64 Rust target (not with --host-only: `cargo lambda watch` runs host
# builds). Idempotent; prints the venv's bin folder for PATH.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
if [ ! -x "$root/.venv/bin/cargo-lambda" ]; then
  [ -x "$root/.venv/bin/python" ] || python3 -m venv "$root/.venv"
  "$root/.venv/bin/python" -m pip install -q "cargo-lambda==1.9.2" "ziglang==0.17.1" >&2
fi
if [ "${1:-}" != "--host-only" ]; then
  rustup target list --installed | grep -qx aarch64-unknown-linux-gnu \
    || rustup target add aarch64-unknown-linux-gnu >&2
fi
echo "$root/.venv/bin"
