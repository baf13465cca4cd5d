"""A plain A2A agent built with the official Python SDK (a2a-sdk 1.3.0). It knows nothing
about a2a-push-hub: it pushes each task update once, unsigned, with no retry — as every SDK does.

    python agent.py 9999
"""

import asyncio
import sys

import httpx
import uvicorn
from starlette.applications import Starlette

from a2a.helpers.proto_helpers import new_task_from_user_message, new_text_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import (BasePushNotificationSender, InMemoryPushNotificationConfigStore,
                              InMemoryTaskStore, TaskUpdater)
from a2a.types.a2a_pb2 import AgentCapabilities, AgentCard, AgentInterface, AgentSkill

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 9999


class Echo(AgentExecutor):
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task = context.current_task or new_task_from_user_message(context.message)
        if not context.current_task:
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.start_work(new_text_message('thinking', context_id=task.context_id, task_id=task.id))
        await asyncio.sleep(1)
        await updater.add_artifact([new_text_part(f'echo: {context.get_user_input()}')], name='answer')
        await updater.complete()

    async def cancel(self, context, event_queue):
        raise NotImplementedError


card = AgentCard(
    name='echo', description='echoes after a second', version='1.0.0',
    default_input_modes=['text'], default_output_modes=['text'],
    capabilities=AgentCapabilities(streaming=True, push_notifications=True),
    skills=[AgentSkill(id='echo', name='echo', description='echo', tags=['example'])],
    supported_interfaces=[AgentInterface(url=f'http://127.0.0.1:{PORT}/', protocol_binding='JSONRPC', protocol_version='1.0')])
store = InMemoryPushNotificationConfigStore()
handler = DefaultRequestHandler(
    agent_executor=Echo(), task_store=InMemoryTaskStore(), agent_card=card, push_config_store=store,
    push_sender=BasePushNotificationSender(httpx_client=httpx.AsyncClient(), config_store=store))
app = Starlette(routes=[*create_agent_card_routes(card), *create_jsonrpc_routes(handler, '/')])
uvicorn.run(app, host='127.0.0.1', port=PORT, log_level='warning')
