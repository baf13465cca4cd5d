#!/usr/bin/env bash
# A throw-away PostgreSQL for the tests: a fresh cluster in a folder, on a free loopback port,
# trusting local connections. Nothing is installed or changed outside that folder.
#
#   scripts/throwaway-postgres.sh start DIR   # prints the URL of database "hub_test"
#   scripts/throwaway-postgres.sh stop DIR
#
# The server also accepts TLS, with a certificate for 127.0.0.1 signed by a throw-away CA whose
# certificate is DIR/tls/ca.crt (needs the openssl command; without it, plain connections only).
#
# Needs the server binaries (Debian: the `postgresql` package). PostgreSQL refuses to run as
# root, so as root the cluster runs as the `postgres` user the package creates.
set -euo pipefail

action="${1:?start or stop}"
dir="$(mkdir -p "${2:?a folder}" && cd "$2" && pwd)"

bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
if [ -z "$bindir" ] && command -v pg_ctl > /dev/null; then
  bindir="$(dirname "$(command -v pg_ctl)")"
fi
[ -n "$bindir" ] || { echo "no PostgreSQL server binaries (install the postgresql package)" >&2; exit 1; }

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$action" in
  start)
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
    as_owner "$bindir/initdb" -D "$dir/data" -U postgres -A trust --no-sync > "$dir/initdb.log" 2>&1
    tls_options=""
    if command -v openssl > /dev/null; then
      tls="$dir/tls"
      mkdir -p "$tls"
      {
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
          -subj "/CN=a2a-push-hub throw-away test CA" -keyout "$tls/ca.key" -out "$tls/ca.crt" \
          -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
          -keyout "$tls/server.key" -out "$tls/server.csr"
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' > "$tls/server.ext"
        openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" \
          -CAcreateserial -days 2 -extfile "$tls/server.ext" -out "$tls/server.crt"
      } > "$tls/openssl.log" 2>&1
      chmod 600 "$tls/server.key" "$tls/ca.key"
      if [ "$(id -u)" = 0 ]; then chown -R postgres "$tls"; fi
      tls_options="-c ssl=on -c ssl_cert_file='$tls/server.crt' -c ssl_key_file='$tls/server.key'"
    fi
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories='$dir' -c max_connections=300 $tls_options" \
      start > /dev/null
    as_owner "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres hub_test
    echo "postgres://postgres@127.0.0.1:$port/hub_test"
    ;;
  stop)
    as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate stop > /dev/null 2>&1 || true
    ;;
  *)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
