#!/usr/bin/env bash
# The hub behind nginx terminating TLS, end to end: a self-signed certificate, the hub on
# loopback with public_base_url = the https URL, nginx in front; then an A2A client's calls
# over HTTPS, and a renewed certificate served after `nginx -s reload`, nothing restarted.
# Usage: examples/tls-proxy/run.sh [path/to/a2a-push-hub]   (needs nginx, openssl, curl)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
hub_binary="${1:-$here/../../target/release/a2a-push-hub}"
work="$(mktemp -d)"
hub_pid=""
cleanup() {
  [ -n "$hub_pid" ] && kill "$hub_pid" 2> /dev/null || true
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2> /dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# On a failure, nginx's own log says why.
trap 'cat "$work/error.log" 2> /dev/null || true' ERR

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
certificate() { # $1: name
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost" \
    -keyout "$work/$1.key" -out "$work/$1.crt" 2> /dev/null
}

tls_port=$(free_port); public_port=$(free_port); admin_port=$(free_port)
certificate first
cp "$work/first.crt" "$work/hub.crt"; cp "$work/first.key" "$work/hub.key"

# The hub: public and admin listeners on loopback, told the URL peers really use.
A2A_PUSH_HUB_SERVER__PUBLIC_BASE_URL="https://localhost:$tls_port" \
  "$hub_binary" serve --data-dir "$work/store" \
  --public-listen "127.0.0.1:$public_port" --admin-listen "127.0.0.1:$admin_port" \
  > "$work/hub.log" 2>&1 &
hub_pid=$!

mkdir -p "$work"/{body,proxy,fastcgi,uwsgi,scgi}
sed -e "s|@PORT@|$tls_port|" -e "s|@CERT@|$work/hub.crt|" -e "s|@KEY@|$work/hub.key|" \
  -e "s|@HUB@|127.0.0.1:$public_port|" -e "s|@PREFIX@|$work|g" "$here/nginx.conf" > "$work/nginx.conf"
nginx -c "$work/nginx.conf" -p "$work"

https() { curl --silent --show-error --fail --cacert "$1" --max-time 10 "${@:2}"; }
for _ in $(seq 100); do
  https "$work/first.crt" "https://localhost:$tls_port/.well-known/agent-card.json" > "$work/card.json" 2> /dev/null && break
  sleep 0.1
done

# The card and an intake URL name the https URL, not the loopback listener.
grep -q "https://localhost:$tls_port" "$work/card.json" || { echo "the card does not name the https URL"; cat "$work/card.json"; exit 1; }
created=$(https "$work/first.crt" -X POST "https://localhost:$tls_port/" -H 'content-type: application/json' \
  -d '{"jsonrpc":"2.0","id":1,"method":"CreateTaskPushNotificationConfig","params":{"taskId":"t-tls","url":"https://receiver.example/hook"}}')
echo "$created" | grep -q '"result"' || { echo "JSON-RPC over HTTPS failed: $created"; exit 1; }
# Plain HTTP to the TLS port is refused by nginx, not answered by the hub.
if curl --silent --fail --max-time 5 "http://localhost:$tls_port/.well-known/jwks.json" > /dev/null; then
  echo "plain HTTP was answered on the TLS port"; exit 1
fi

# Renewal: a new certificate, `nginx -s reload`; new connections get it, nothing restarts.
certificate second
cp "$work/second.crt" "$work/hub.crt"; cp "$work/second.key" "$work/hub.key"
nginx -c "$work/nginx.conf" -p "$work" -s reload
# The old workers finish their connections and stop accepting new ones a moment after the
# reload: wait (at most 10 s) until 20 new connections in a row present the new certificate.
in_a_row=0
for _ in $(seq 200); do
  if https "$work/second.crt" "https://localhost:$tls_port/.well-known/jwks.json" > /dev/null 2>&1; then
    in_a_row=$((in_a_row + 1))
    [ "$in_a_row" -ge 20 ] && break
  else
    in_a_row=0
    sleep 0.05
  fi
done
[ "$in_a_row" -ge 20 ] || { echo "the renewed certificate was not served after the reload"; exit 1; }
kill -0 "$hub_pid"
echo "the hub served A2A over TLS behind nginx, and a renewed certificate took effect on reload"
