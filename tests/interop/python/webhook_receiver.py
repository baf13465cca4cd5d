"""A webhook receiver built on the official A2A Python SDK (a2a-sdk 1.3.0).

Usage: webhook_receiver.py <expected_token> <expected_authorization>

Listens on 127.0.0.1 (an ephemeral port, printed first as `LISTENING <port>`), parses every
delivered body with the SDK's own parser (`ParseDict(body, StreamResponse())`, as the SDK's
push-notification test receiver does), checks the headers an A2A receiver relies on, answers
200 when everything holds and 400 otherwise, and prints one JSON line per request.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from a2a.types.a2a_pb2 import StreamResponse
from google.protobuf.json_format import ParseDict

EXPECTED_TOKEN = sys.argv[1]
EXPECTED_AUTHORIZATION = sys.argv[2]


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        length = int(self.headers.get('content-length', '0'))
        raw = self.rfile.read(length)
        problems = []
        kind, task_id = None, None
        try:
            event = ParseDict(json.loads(raw), StreamResponse())
            kind = event.WhichOneof('payload')
            if kind == 'task':
                task_id = event.task.id
            elif kind == 'status_update':
                task_id = event.status_update.task_id
            elif kind == 'artifact_update':
                task_id = event.artifact_update.task_id
            elif kind == 'message':
                task_id = event.message.task_id
        except Exception as e:  # the SDK's parser refused the body
            problems.append(f'body is not a StreamResponse: {e}')
        content_type = self.headers.get('content-type', '')
        if content_type not in ('application/a2a+json', 'application/json'):
            problems.append(f'content-type {content_type!r}')
        if self.headers.get('a2a-version') != '1.0':
            problems.append(f"a2a-version {self.headers.get('a2a-version')!r}")
        if self.headers.get('x-a2a-notification-token') != EXPECTED_TOKEN:
            problems.append('x-a2a-notification-token does not match')
        if self.headers.get('a2a-notification-token') != EXPECTED_TOKEN:
            problems.append('a2a-notification-token does not match')
        if self.headers.get('authorization') != EXPECTED_AUTHORIZATION:
            problems.append('authorization does not match')
        if not self.headers.get('webhook-id'):
            problems.append('no webhook-id')
        sequence = self.headers.get('x-a2a-push-sequence', '')
        if not sequence.isdigit():
            problems.append(f'x-a2a-push-sequence {sequence!r}')
        record = {
            'ok': not problems,
            'problems': problems,
            'kind': kind,
            'taskId': task_id,
            'sequence': int(sequence) if sequence.isdigit() else None,
            'webhookId': self.headers.get('webhook-id'),
        }
        print(json.dumps(record), flush=True)
        self.send_response(200 if not problems else 400)
        self.send_header('content-length', '0')
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
print(f'LISTENING {server.server_address[1]}', flush=True)
server.serve_forever()
