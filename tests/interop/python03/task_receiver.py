"""A 0.3 webhook: parses every delivery with the 0.3 SDK's own `Task` model and checks the
token its config registered.

Usage: task_receiver.py <expected_token>. Prints `LISTENING <port>`, then one JSON line per request.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from a2a.types import Task

TOKEN = sys.argv[1]


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get('content-length', '0')))
        problems = []
        state = None
        try:
            task = Task.model_validate_json(body)
            state = task.status.state.value
        except Exception as e:
            problems.append(f'not a 0.3 Task: {e}')
        if self.headers.get('x-a2a-notification-token') != TOKEN:
            problems.append('token does not match')
        print(json.dumps({'ok': not problems, 'problems': problems, 'path': self.path, 'state': state,
                          'sequence': self.headers.get('x-a2a-push-sequence')}), flush=True)
        self.send_response(200 if not problems else 400)
        self.send_header('content-length', '0')
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
print(f'LISTENING {server.server_address[1]}', flush=True)
server.serve_forever()
