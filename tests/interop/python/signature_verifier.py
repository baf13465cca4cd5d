"""A receiver that verifies a2a-push-hub's signatures with independent Python libraries.

Usage: signature_verifier.py <whsec_secret> <jwks_url> <expected_issuer>

- `v1`: the `standardwebhooks` package, with the whsec_ secret;
- JWT: PyJWT (with `cryptography`), against the JWKS fetched fresh for every request (so a
  rotation is picked up), with issuer, `request_body_sha256` and the audience (this
  receiver's own URL) checked;
- `v1a`: `cryptography`'s Ed25519, with the OKP keys of the same JWKS.

Prints `LISTENING <port>` first, then one JSON line per request; answers 200 when every check
passed and 401 otherwise.
"""

import base64
import hashlib
import json
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from standardwebhooks.webhooks import Webhook

SECRET, JWKS_URL, ISSUER = sys.argv[1:4]


def b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + '=' * (-len(text) % 4))


def fetch_jwks() -> dict:
    with urllib.request.urlopen(JWKS_URL, timeout=10) as response:
        return json.load(response)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get('content-length', '0')))
        headers = {k.lower(): v for k, v in self.headers.items()}
        checks, problems = {}, []
        try:
            Webhook(SECRET).verify(body.decode('utf-8'), headers)
            checks['v1'] = True
        except Exception as e:
            checks['v1'] = False
            problems.append(f'v1: {e}')
        jwks = fetch_jwks()
        try:
            token = headers['authorization'].removeprefix('Bearer ')
            kid = jwt.get_unverified_header(token)['kid']
            key = next(k for k in jwks['keys'] if k['kid'] == kid)
            audience = f'http://127.0.0.1:{self.server.server_address[1]}{self.path}'
            claims = jwt.decode(token, jwt.PyJWK(key).key, algorithms=['ES256'], audience=audience, issuer=ISSUER)
            if claims['request_body_sha256'] != hashlib.sha256(body).hexdigest():
                raise ValueError('request_body_sha256 does not match')
            checks['jwt'] = True
        except Exception as e:
            checks['jwt'] = False
            problems.append(f'jwt: {e!r}')
        content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
        ed_keys = [Ed25519PublicKey.from_public_bytes(b64url(k['x'])) for k in jwks['keys'] if k.get('kty') == 'OKP']
        signatures = [s.split(',', 1)[1] for s in headers.get('webhook-signature', '').split(' ') if s.startswith('v1a,')]
        checks['v1a'] = False
        for signature in signatures:
            for key in ed_keys:
                try:
                    key.verify(base64.b64decode(signature), content)
                    checks['v1a'] = True
                except Exception:
                    pass
        if not checks['v1a']:
            problems.append('v1a: no signature verifies with the JWKS keys')
        ok = all(checks.values())
        print(json.dumps({'ok': ok, 'checks': checks, 'problems': problems,
                          'sequence': int(headers.get('x-a2a-push-sequence', '0')),
                          'v1aSignatures': len(signatures)}), flush=True)
        self.send_response(200 if ok else 401)
        self.send_header('content-length', '0')
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
print(f'LISTENING {server.server_address[1]}', flush=True)
server.serve_forever()
