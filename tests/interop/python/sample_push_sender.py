"""The push sender of the A2A samples (and the many agents that copied it), reproduced with
PyJWT: RS256 with `kid`, claims `iat` and `request_body_sha256` only, the hash over
`json.dumps(data, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))`.

Usage:
  sample_push_sender.py keys <dir>                      writes <dir>/key.pem and <dir>/jwks.json
  sample_push_sender.py push <dir> <url> <mode> [<out>]  sends one push, prints status and body
  sample_push_sender.py verify <url>                     the sender's URL check, prints its verdict

Modes: `httpx` sends the body as httpx does (`json=`), `spaced` spells it as `json.dumps`
does by default (what `requests` and older httpx send: spaces, non-ASCII as \\u escapes),
`tampered` changes the body after signing, `stale` signs with an `iat` ten minutes old.
With <out>, the exact request (token and body) is written there, and `replay` sends it again.
"""

import hashlib
import json
import sys
import time
import uuid

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

KID = 'sample-sender-key'


def body_sha256(data) -> str:
    body_str = json.dumps(data, ensure_ascii=False, allow_nan=False, indent=None, separators=(',', ':'))
    return hashlib.sha256(body_str.encode()).hexdigest()


def keys(folder: str) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with open(f'{folder}/key.pem', 'wb') as out:
        out.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    public.update({'kid': KID, 'use': 'sig'})
    with open(f'{folder}/jwks.json', 'w') as out:
        json.dump({'keys': [public]}, out)


def push(folder: str, url: str, mode: str, record: str | None) -> None:
    with open(f'{folder}/key.pem', 'rb') as key_file:
        key = serialization.load_pem_private_key(key_file.read(), password=None)
    data = {'statusUpdate': {
        'taskId': 'task-sample',
        'contextId': 'ctx-1',
        'status': {'state': 'TASK_STATE_WORKING', 'message': {
            'messageId': str(uuid.uuid4()), 'role': 'ROLE_AGENT',
            'parts': [{'text': 'Grüße — 進行中 ✓ "quoted" \\ back'}]}},
        'metadata': {'ratio': 0.5, 'count': 3},
    }}
    iat = int(time.time()) - (600 if mode == 'stale' else 0)
    token = jwt.encode({'iat': iat, 'request_body_sha256': body_sha256(data)}, key, algorithm='RS256', headers={'kid': KID})
    if mode == 'tampered':
        data['statusUpdate']['status']['state'] = 'TASK_STATE_COMPLETED'
    if mode == 'spaced':
        body = json.dumps(data).encode()
    else:
        body = None
    headers = {'Authorization': f'Bearer {token}'}
    if mode == 'replay':
        with open(record) as saved:
            request = json.load(saved)
        headers, body = request['headers'], request['body'].encode()
    with httpx.Client(timeout=10) as client:
        if body is None:
            response = client.post(url, json=data, headers=headers)
            body = response.request.content
        else:
            response = client.post(url, content=body, headers={**headers, 'Content-Type': 'application/json'})
    if record and mode != 'replay':
        with open(record, 'w') as out:
            json.dump({'headers': headers, 'body': body.decode()}, out)
    print(response.status_code, response.text, flush=True)


def verify(url: str) -> None:
    """The sample's check that a webhook URL is the receiver's: it must echo a token."""
    validation_token = str(uuid.uuid4())
    with httpx.Client(timeout=10) as client:
        response = client.get(url, params={'validationToken': validation_token})
        response.raise_for_status()
        print('verified' if response.text == validation_token else f'not verified: {response.text!r}', flush=True)


if __name__ == '__main__':
    if sys.argv[1] == 'keys':
        keys(sys.argv[2])
    elif sys.argv[1] == 'verify':
        verify(sys.argv[2])
    else:
        push(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] if len(sys.argv) > 5 else None)
