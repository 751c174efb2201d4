#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL 15 on loopback, then stops and deletes it.
#   tests/scripts/with-postgres.sh cargo nextest run --workspace
# Exports TAPLINE_TEST_POSTGRES_URL for the command. initdb refuses to run as root, so as root
# the cluster belongs to the `postgres` user (created by the postgresql package).
# Exports TAPLINE_TEST_PG_PYTHON too: a Python with psycopg 3 and SQLAlchemy (PyPI, pinned,
# installed into .venv/ when missing), for the test that reads the typed views as a BI client.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
psycopg=3.3.9
sqlalchemy=2.1.9

if [ ! -x "$root/.venv/bin/python" ]; then
  echo "with-postgres: creating $root/.venv" >&2
  python3 -m venv "$root/.venv"
fi
python="$root/.venv/bin/python"
if [ "$("$python" -c 'import psycopg, sqlalchemy; print(psycopg.__version__, sqlalchemy.__version__)' 2>/dev/null)" \
    != "$psycopg $sqlalchemy" ]; then
  "$python" -m pip install -q "psycopg[binary]==$psycopg" "sqlalchemy==$sqlalchemy"
fi
export TAPLINE_TEST_PG_PYTHON="$python"

if ! command -v initdb >/dev/null || ! command -v pg_ctl >/dev/null; then
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$bin" ] && [ -x "$bin/initdb" ]; then
    PATH="$bin:$PATH"
  elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "with-postgres: installing PostgreSQL (apt-get install postgresql)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    PATH="$bin:$PATH"
  else
    echo "with-postgres: initdb and pg_ctl are needed (Debian: apt-get install postgresql)" >&2
    exit 1
  fi
fi

as_owner=()
dir=$(mktemp -d /tmp/tapline-pg.XXXXXX)
if [ "$(id -u)" = 0 ]; then
  as_owner=(runuser -u postgres --)
  chown postgres "$dir"
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

stop() {
  "${as_owner[@]}" pg_ctl -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap stop EXIT

"${as_owner[@]}" initdb -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
  || { cat "$dir/initdb.log" >&2; exit 1; }

# TLS with a throwaway CA, so sslmode=require is tested for real (the server certificate names
# 127.0.0.1, which is what clients verify).
ssl_opts=""
if command -v openssl >/dev/null; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=tapline test CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" >/dev/null 2>&1
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$dir/server.key" -out "$dir/server.csr" >/dev/null 2>&1
  printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > "$dir/san.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 2 -extfile "$dir/san.ext" -out "$dir/server.pem" >/dev/null 2>&1
  chmod 600 "$dir/server.key"
  [ -n "${as_owner[*]}" ] && chown postgres "$dir/server.key" "$dir/server.pem"
  ssl_opts="-c ssl=on -c ssl_cert_file=$dir/server.pem -c ssl_key_file=$dir/server.key"
  export TAPLINE_TEST_POSTGRES_CA="$dir/ca.pem"
fi

"${as_owner[@]}" pg_ctl -D "$dir/data" -l "$dir/server.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=200 $ssl_opts" start >/dev/null \
  || { cat "$dir/server.log" >&2; exit 1; }

export TAPLINE_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
echo "with-postgres: PostgreSQL $("${as_owner[@]}" postgres --version | awk '{print $3}') on 127.0.0.1:$port" >&2
"$@"
