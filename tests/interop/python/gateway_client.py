"""The official A2A Python client (a2a-sdk 1.3.0) talking to an agent through the hub's gateway.

Usage: gateway_client.py <hub_a2a_url> <JSONRPC|HTTP+JSON> <hook_base_url>

1. sends a message with an inline push config (token and Bearer credentials), not streaming;
2. sends a message without one, then creates a push config on the running task;
3. sends a streaming message with an inline push config and reads the stream to its end.
Each of the three clients calls in a trace of its own (a W3C `traceparent` on every request,
trace id `0000…0001` for inline, `…0002` for late, `…0003` for stream), as an instrumented
application would. Prints one JSON object: the three task ids.
"""

import asyncio
import json
import sys

import httpx

from a2a.client import ClientConfig, ClientFactory, minimal_agent_card
from a2a.types.a2a_pb2 import (AuthenticationInfo, Message, Part, Role, SendMessageConfiguration,
                               SendMessageRequest, TaskPushNotificationConfig)

HUB, BINDING, HOOK = sys.argv[1], sys.argv[2], sys.argv[3].rstrip('/')


TRACE_OF = {'inline': 1, 'late': 2, 'stream': 3}


def traceparent(kind: str) -> str:
    return f'00-{TRACE_OF[kind]:032x}-{TRACE_OF[kind]:016x}-01'


def client(streaming: bool, inline: str | None, kind: str):
    push = None
    if inline:
        push = TaskPushNotificationConfig(id='cfg-inline', url=f'{HOOK}/{inline}', token=f'tok-{inline}',
                                          authentication=AuthenticationInfo(scheme='Bearer', credentials=f'cred-{inline}'))
    http = httpx.AsyncClient(headers={'traceparent': traceparent(kind)}, timeout=60)
    config = ClientConfig(streaming=streaming, supported_protocol_bindings=[BINDING],
                          push_notification_config=push, httpx_client=http)
    return ClientFactory(config).create(minimal_agent_card(HUB, [BINDING]))


def request(text: str, immediately: bool) -> SendMessageRequest:
    return SendMessageRequest(
        message=Message(message_id=f'm-{text}', role=Role.ROLE_USER, parts=[Part(text=text)]),
        configuration=SendMessageConfiguration(return_immediately=immediately))


async def task_of(c, req) -> str:
    task_id = None
    async for response in c.send_message(req):
        if response.HasField('task'):
            task_id = response.task.id
        elif response.HasField('status_update'):
            task_id = task_id or response.status_update.task_id
    return task_id


async def main():
    inline = client(False, 'inline', 'inline')
    inline_task = await task_of(inline, request('inline', True))

    late_client = client(False, None, 'late')
    late_task = await task_of(late_client, request('late', True))
    await late_client.create_task_push_notification_config(TaskPushNotificationConfig(
        task_id=late_task, id='cfg-late', url=f'{HOOK}/late', token='tok-late'))

    streaming = client(True, 'stream', 'stream')
    stream_task = await task_of(streaming, request('stream', False))

    print(json.dumps({'inline': inline_task, 'late': late_task, 'stream': stream_task}), flush=True)
    for c in (inline, late_client, streaming):
        await c.close()


asyncio.run(main())
