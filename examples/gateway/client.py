"""Sends a message to the agent *through the hub*, with a push config for the receiver, using
the official A2A Python client — exactly as it would talk to the agent directly.

    python client.py http://127.0.0.1:8080/ http://127.0.0.1:7000/hook "hello"
"""

import asyncio
import sys

from a2a.client import ClientConfig, ClientFactory, minimal_agent_card
from a2a.types.a2a_pb2 import (Message, Part, Role, SendMessageConfiguration, SendMessageRequest,
                               TaskPushNotificationConfig)

HUB, HOOK, TEXT = sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else 'hello'


async def main():
    config = ClientConfig(streaming=False, supported_protocol_bindings=['JSONRPC'],
                          push_notification_config=TaskPushNotificationConfig(url=HOOK, token='my-token'))
    client = ClientFactory(config).create(minimal_agent_card(HUB, ['JSONRPC']))
    request = SendMessageRequest(message=Message(message_id='m-1', role=Role.ROLE_USER, parts=[Part(text=TEXT)]),
                                 configuration=SendMessageConfiguration(return_immediately=True))
    async for response in client.send_message(request):
        if response.HasField('task'):
            print('task', response.task.id, 'started; watch the receiver')
    await client.close()


asyncio.run(main())
