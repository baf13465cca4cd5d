"""A webhook that accepts only what the hub signed: it verifies the Standard Webhooks `v1a`
signature of every delivery against the hub's public keys (its JWKS), refuses stale ones, and
de-duplicates by `webhook-id`.

    python receiver.py 7000 http://127.0.0.1:8080/.well-known/jwks.json
"""

import base64
import json
import sys
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

PORT, JWKS_URL = int(sys.argv[1]), sys.argv[2]
seen = set()


def hub_keys():
    with urllib.request.urlopen(JWKS_URL, timeout=10) as response:
        keys = json.load(response)['keys']
    return [Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(k['x'] + '=' * (-len(k['x']) % 4)))
            for k in keys if k.get('kty') == 'OKP']


def verified(headers, body: bytes) -> bool:
    webhook_id, timestamp = headers.get('webhook-id', ''), headers.get('webhook-timestamp', '0')
    if abs(time.time() - int(timestamp)) > 300:
        return False
    content = f'{webhook_id}.{timestamp}.'.encode() + body
    for entry in headers.get('webhook-signature', '').split():
        version, _, signature = entry.partition(',')
        if version != 'v1a':
            continue
        for key in hub_keys():
            try:
                key.verify(base64.b64decode(signature), content)
                return True
            except Exception:
                pass
    return False


class Hook(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get('content-length', '0')))
        if not verified(self.headers, body):
            print('REFUSED: signature does not verify', flush=True)
            self.send_response(401)
        else:
            duplicate = self.headers['webhook-id'] in seen
            seen.add(self.headers['webhook-id'])
            event = json.loads(body)
            kind = next(iter(event))
            print(f"{'duplicate' if duplicate else 'verified'} #{self.headers.get('x-a2a-push-sequence')} {kind}: "
                  f"{json.dumps(event[kind])[:120]}", flush=True)
            self.send_response(200)
        self.send_header('content-length', '0')
        self.end_headers()

    def log_message(self, *args):
        pass


print(f'receiver on http://127.0.0.1:{PORT}/hook', flush=True)
ThreadingHTTPServer(('127.0.0.1', PORT), Hook).serve_forever()
