"""An A2A 0.3 agent built with the last 0.3 release of the official Python SDK (a2a-sdk 0.3.26),
pushing with that SDK's own sender (the whole 0.3 Task, JSON): the 0.3 peer the probe grades.

Usage: agent_server.py

Binds 127.0.0.1 on an ephemeral port and prints `LISTENING <port>`. Serves 0.3 JSON-RPC at `/`.
Each task: SUBMITTED, then (once the SDK pushed that) WORKING; it then waits (up to 30 s) until a
push-notification config is registered for the task, and finishes with an artifact and COMPLETED.
"""

import asyncio
import socket

import httpx
import uvicorn

from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.apps import A2AStarletteApplication
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.tasks import (BasePushNotificationSender, InMemoryPushNotificationConfigStore,
                              InMemoryTaskStore, TaskUpdater)
from a2a.types import AgentCapabilities, AgentCard, AgentSkill, Part, TextPart
from a2a.utils import new_task

sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(('127.0.0.1', 0))
# Listening before `LISTENING` is printed: a client that connects at once is queued until
# uvicorn serves, not refused.
sock.listen(128)
PORT = sock.getsockname()[1]
store = InMemoryPushNotificationConfigStore()
# Tasks whose executor waits for the SDK to finish pushing their submitted state.
first_push_sent: dict[str, asyncio.Event] = {}


class TellsWhenThePushWent(BasePushNotificationSender):
    """The SDK's sender, unchanged; it only tells a waiting executor that a push went out."""

    async def send_notification(self, task) -> None:
        try:
            await super().send_notification(task)
        finally:
            if task.id in first_push_sent:
                first_push_sent[task.id].set()


class WaitsForAWebhook(AgentExecutor):
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task = context.current_task or new_task(context.message)
        if not context.current_task:
            # The SDK pushes the submitted task from the returning non-blocking SendMessage
            # while its background consumer pushes every later event, concurrently: on a busy
            # machine the first push can be overtaken or read the task already working (the
            # same push twice). Like an agent that takes a moment before it starts, this one
            # starts working once that push went out (at most 2 s: a webhook may hold it), so
            # that the probe grades the SDK's sender rather than that race.
            first_push_sent[task.id] = asyncio.Event()
            await event_queue.enqueue_event(task)
            try:
                await asyncio.wait_for(first_push_sent[task.id].wait(), 2)
            except asyncio.TimeoutError:
                pass
            del first_push_sent[task.id]
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.start_work()
        for _ in range(300):
            if await store.get_info(task.id):
                break
            await asyncio.sleep(0.1)
        await updater.add_artifact([Part(root=TextPart(text='42'))], name='answer')
        await updater.complete()

    async def cancel(self, context, event_queue):
        raise NotImplementedError


card = AgentCard(
    name='interop-agent-03', description='waits for a webhook, then completes', version='1.0.0',
    url=f'http://127.0.0.1:{PORT}/', protocol_version='0.3.0', preferred_transport='JSONRPC',
    default_input_modes=['text'], default_output_modes=['text'],
    capabilities=AgentCapabilities(streaming=True, push_notifications=True),
    skills=[AgentSkill(id='answer', name='answer', description='answers', tags=['test'])])
sender = TellsWhenThePushWent(httpx_client=httpx.AsyncClient(timeout=10), config_store=store)
handler = DefaultRequestHandler(agent_executor=WaitsForAWebhook(), task_store=InMemoryTaskStore(),
                                push_config_store=store, push_sender=sender)
app = A2AStarletteApplication(agent_card=card, http_handler=handler).build()

print(f'LISTENING {PORT}', flush=True)
uvicorn.Server(uvicorn.Config(app, log_level='warning')).run(sockets=[sock])
