"""The last 0.3 release of the official Python SDK (a2a-sdk 0.3.26) managing push configs on the
hub over 0.3 JSON-RPC and 0.3 REST (`/v1/`).

Usage: push_config_client.py <hub_base_url> <hook_base_url>

For each binding: set a config, get it, list, delete, get again (must fail), and set a config
that stays (for the delivery check). List and delete are not methods of the 0.3 client; they are
sent with the SDK's own request and response models. Prints `TASK <binding> <task id>` per
binding, then `interop-03: all checks passed`.
"""

import asyncio
import sys
import uuid

import httpx
from google.protobuf.json_format import ParseDict

from a2a.client.transports.jsonrpc import JsonRpcTransport
from a2a.client.transports.rest import RestTransport
from a2a.grpc import a2a_pb2
from a2a.types import (DeleteTaskPushNotificationConfigParams, DeleteTaskPushNotificationConfigRequest,
                       DeleteTaskPushNotificationConfigResponse, GetTaskPushNotificationConfigParams,
                       ListTaskPushNotificationConfigParams, ListTaskPushNotificationConfigRequest,
                       ListTaskPushNotificationConfigResponse, PushNotificationAuthenticationInfo,
                       PushNotificationConfig, TaskPushNotificationConfig)

HUB, HOOK = sys.argv[1].rstrip('/'), sys.argv[2].rstrip('/')


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print(f'ok   {what}', flush=True)


def config(task_id, config_id, path):
    return TaskPushNotificationConfig(task_id=task_id, push_notification_config=PushNotificationConfig(
        id=config_id, url=f'{HOOK}/{path}', token='tok-03',
        authentication=PushNotificationAuthenticationInfo(schemes=['Bearer'], credentials='cred-03')))


async def scenario(http, binding):
    transport = JsonRpcTransport(http, url=f'{HUB}/') if binding == 'jsonrpc' else RestTransport(http, url=HUB)
    task_id = f'task03-{binding}-{uuid.uuid4()}'
    created = await transport.set_task_callback(config(task_id, 'cfg-a', f'{binding}/a'))
    check(created.push_notification_config.url == f'{HOOK}/{binding}/a', f'{binding}: set answers the config')
    check(not created.push_notification_config.token, f'{binding}: set answers no token')
    got = await transport.get_task_callback(GetTaskPushNotificationConfigParams(id=task_id, push_notification_config_id='cfg-a'))
    check(got.push_notification_config.id == 'cfg-a' and got.task_id == task_id, f'{binding}: get returns it')
    auth = got.push_notification_config.authentication
    check(auth is not None and auth.schemes == ['Bearer'] and not auth.credentials, f'{binding}: schemes kept, credentials not answered')
    if binding == 'jsonrpc':
        request = ListTaskPushNotificationConfigRequest(id='1', params=ListTaskPushNotificationConfigParams(id=task_id))
        answer = (await http.post(f'{HUB}/', json=request.model_dump(mode='json', exclude_none=True))).json()
        listed = ListTaskPushNotificationConfigResponse.model_validate(answer).root.result
        check([c.push_notification_config.id for c in listed] == ['cfg-a'], f'{binding}: list answers a bare array')
        request = DeleteTaskPushNotificationConfigRequest(id='2', params=DeleteTaskPushNotificationConfigParams(id=task_id, push_notification_config_id='cfg-a'))
        answer = (await http.post(f'{HUB}/', json=request.model_dump(mode='json', exclude_none=True))).json()
        DeleteTaskPushNotificationConfigResponse.model_validate(answer)
        check(answer.get('result', 'missing') is None, f'{binding}: delete answers null')
    else:
        answer = (await http.get(f'{HUB}/v1/tasks/{task_id}/pushNotificationConfigs')).json()
        listed = ParseDict(answer, a2a_pb2.ListTaskPushNotificationConfigResponse())
        check([c.name for c in listed.configs] == [f'tasks/{task_id}/pushNotificationConfigs/cfg-a'], f'{binding}: list answers proto JSON')
        response = await http.delete(f'{HUB}/v1/tasks/{task_id}/pushNotificationConfigs/cfg-a')
        check(response.status_code == 200, f'{binding}: delete succeeds')
    try:
        await transport.get_task_callback(GetTaskPushNotificationConfigParams(id=task_id, push_notification_config_id='cfg-a'))
        raise AssertionError(f'{binding}: get after delete succeeded')
    except AssertionError:
        raise
    except Exception as e:
        print(f'ok   {binding}: get after delete fails ({type(e).__name__})', flush=True)
    await transport.set_task_callback(config(task_id, 'cfg-keep', f'deliver-{binding}'))
    print(f'TASK {binding} {task_id}', flush=True)


async def main():
    async with httpx.AsyncClient(timeout=30) as http:
        for binding in ['jsonrpc', 'rest']:
            await scenario(http, binding)
    print('interop-03: all checks passed', flush=True)


asyncio.run(main())
