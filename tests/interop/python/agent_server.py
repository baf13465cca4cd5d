"""An A2A agent built with the official Python SDK (a2a-sdk 1.3.0), pushing with the SDK's
own sender: the peer the hub's inbound role receives from.

Usage: agent_server.py

Binds 127.0.0.1 on an ephemeral port and prints `LISTENING <port>`. Serves JSON-RPC at `/`
and HTTP+JSON at `/rest`. Each task: SUBMITTED, then WORKING; it then waits (up to 30 s) until
a push-notification config is registered for the task, and finishes with an artifact and
COMPLETED — so a webhook registered after the task started sees those pushes. A message that
starts with `ask:` makes the task INPUT_REQUIRED first ("which colour?"); the next message of
the task completes it with the answer as its artifact.
"""

import asyncio
import socket

import httpx
import uvicorn
from starlette.applications import Starlette

from a2a.helpers.proto_helpers import new_task_from_user_message, new_text_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes, create_rest_routes
from a2a.server.tasks import (BasePushNotificationSender, InMemoryPushNotificationConfigStore,
                              InMemoryTaskStore, TaskUpdater)
from a2a.types.a2a_pb2 import AgentCapabilities, AgentCard, AgentInterface, AgentSkill

sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(('127.0.0.1', 0))
# Listening before `LISTENING` is printed: a client that connects at once is queued until
# uvicorn serves, not refused.
sock.listen(128)
PORT = sock.getsockname()[1]
BASE = f'http://127.0.0.1:{PORT}'
store = InMemoryPushNotificationConfigStore()


class WaitsForAWebhook(AgentExecutor):
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task = context.current_task or new_task_from_user_message(context.message)
        if not context.current_task:
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.start_work(new_text_message('working', context_id=task.context_id, task_id=task.id))
        for _ in range(300):
            if await store.get_info_for_dispatch(task.id):
                break
            await asyncio.sleep(0.1)
        text = context.get_user_input()
        if text.startswith('ask:'):
            await updater.requires_input(new_text_message('which colour?', context_id=task.context_id, task_id=task.id))
            return
        answer = text if context.current_task else '42'
        await updater.add_artifact([new_text_part(answer)], name='answer')
        await updater.complete(new_text_message('done', context_id=task.context_id, task_id=task.id))

    async def cancel(self, context, event_queue):
        raise NotImplementedError


card = AgentCard(
    name='interop-agent', description='waits for a webhook, then completes', version='1.0.0',
    default_input_modes=['text'], default_output_modes=['text'],
    capabilities=AgentCapabilities(streaming=True, push_notifications=True),
    skills=[AgentSkill(id='answer', name='answer', description='answers', tags=['test'])],
    supported_interfaces=[AgentInterface(url=BASE + '/', protocol_binding='JSONRPC', protocol_version='1.0'),
                          AgentInterface(url=BASE + '/rest', protocol_binding='HTTP+JSON', protocol_version='1.0')])
sender = BasePushNotificationSender(httpx_client=httpx.AsyncClient(timeout=10), config_store=store)
handler = DefaultRequestHandler(agent_executor=WaitsForAWebhook(), task_store=InMemoryTaskStore(),
                                agent_card=card, push_config_store=store, push_sender=sender)
app = Starlette(routes=[*create_agent_card_routes(card),
                        *create_jsonrpc_routes(handler, '/'),
                        *create_rest_routes(handler, path_prefix='/rest')])

print(f'LISTENING {PORT}', flush=True)
uvicorn.Server(uvicorn.Config(app, log_level='warning')).run(sockets=[sock])
