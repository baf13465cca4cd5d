"""Drives the hub's push-config methods with the official A2A Python client (a2a-sdk 1.3.0).

Usage: push_config_client.py <hub_base_url> <webhook_url> [<api_key> <other_principals_api_key>]

Runs the same scenario over JSON-RPC and HTTP+JSON and exits non-zero on the first answer that
is not what an A2A client should get. Prints one line per check. With API keys (a hub with
`public_auth = "api_keys"`), the client sends the first as `Authorization: Bearer`, and checks
that a client without a key is refused and that one with the other key cannot see its task.
"""

import asyncio
import sys
import uuid

import httpx

from a2a.client import ClientConfig, ClientFactory, minimal_agent_card
from a2a.types.a2a_pb2 import (
    AuthenticationInfo,
    DeleteTaskPushNotificationConfigRequest,
    GetTaskPushNotificationConfigRequest,
    ListTaskPushNotificationConfigsRequest,
    TaskPushNotificationConfig,
)
from a2a.utils.errors import InvalidParamsError, TaskNotFoundError

HUB = sys.argv[1].rstrip('/')
HOOK = sys.argv[2]
API_KEY = sys.argv[3] if len(sys.argv) > 3 else None
OTHER_KEY = sys.argv[4] if len(sys.argv) > 4 else None


def client_for(binding: str, key: str | None):
    headers = {'Authorization': f'Bearer {key}'} if key else {}
    config = ClientConfig(
        streaming=False,
        supported_protocol_bindings=[binding],
        httpx_client=httpx.AsyncClient(headers=headers, timeout=30),
    )
    return ClientFactory(config).create(minimal_agent_card(HUB + '/', [binding]))


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print(f'ok   {what}', flush=True)


async def expect_error(error_type, call, what):
    try:
        await call
    except error_type as e:
        print(f'ok   {what}: {type(e).__name__}: {e}', flush=True)
        return
    raise AssertionError(f'{what}: expected {error_type.__name__}, the call succeeded')


async def scenario(binding: str) -> None:
    client = client_for(binding, API_KEY)
    task_id = f'task-{binding}-{uuid.uuid4()}'
    print(f'--- {binding} task {task_id}', flush=True)

    created = await client.create_task_push_notification_config(
        TaskPushNotificationConfig(
            task_id=task_id,
            id='cfg-a',
            url=HOOK + '/a',
            token='tok-secret-123',
            authentication=AuthenticationInfo(scheme='Bearer', credentials='cred-secret-456'),
        )
    )
    check(created.id == 'cfg-a' and created.task_id == task_id, f'{binding}: create echoes id and task id')
    check(created.url == HOOK + '/a', f'{binding}: create echoes the url')
    check(created.token == '' and created.authentication.credentials == '', f'{binding}: create answers no secret')
    check(created.authentication.scheme == 'Bearer', f'{binding}: create keeps the auth scheme')

    first = await client.create_task_push_notification_config(
        TaskPushNotificationConfig(task_id=task_id, url=HOOK + '/b')
    )
    second = await client.create_task_push_notification_config(
        TaskPushNotificationConfig(task_id=task_id, url=HOOK + '/c')
    )
    check(first.id and second.id and first.id != second.id, f'{binding}: id-less creates get distinct ids')
    uuid.UUID(first.id)

    got = await client.get_task_push_notification_config(
        GetTaskPushNotificationConfigRequest(task_id=task_id, id='cfg-a')
    )
    check(got.url == HOOK + '/a' and got.id == 'cfg-a', f'{binding}: get returns the config')
    check(got.token == '' and got.authentication.credentials == '', f'{binding}: get answers no secret')

    replaced = await client.create_task_push_notification_config(
        TaskPushNotificationConfig(task_id=task_id, id='cfg-a', url=HOOK + '/a2')
    )
    check(replaced.url == HOOK + '/a2', f'{binding}: create with an existing id replaces it')

    listed = await client.list_task_push_notification_configs(
        ListTaskPushNotificationConfigsRequest(task_id=task_id)
    )
    ids = sorted(c.id for c in listed.configs)
    check(ids == sorted(['cfg-a', first.id, second.id]), f'{binding}: list returns the three configs')
    check(all(c.token == '' and c.authentication.credentials == '' for c in listed.configs), f'{binding}: list answers no secret')
    check(listed.next_page_token == '', f'{binding}: a single page has an empty next page token')

    page = await client.list_task_push_notification_configs(
        ListTaskPushNotificationConfigsRequest(task_id=task_id, page_size=2)
    )
    check(len(page.configs) == 2 and page.next_page_token, f'{binding}: page size 2 gives a next page token')
    rest = await client.list_task_push_notification_configs(
        ListTaskPushNotificationConfigsRequest(task_id=task_id, page_size=2, page_token=page.next_page_token)
    )
    check(
        sorted([c.id for c in page.configs] + [c.id for c in rest.configs]) == ids and rest.next_page_token == '',
        f'{binding}: the second page completes the list',
    )

    await client.delete_task_push_notification_config(
        DeleteTaskPushNotificationConfigRequest(task_id=task_id, id='cfg-a')
    )
    await client.delete_task_push_notification_config(
        DeleteTaskPushNotificationConfigRequest(task_id=task_id, id='cfg-a')
    )
    print(f'ok   {binding}: delete twice succeeds (idempotent)', flush=True)
    await expect_error(
        TaskNotFoundError,
        client.get_task_push_notification_config(GetTaskPushNotificationConfigRequest(task_id=task_id, id='cfg-a')),
        f'{binding}: get after delete is TaskNotFound',
    )
    await expect_error(
        InvalidParamsError,
        client.create_task_push_notification_config(TaskPushNotificationConfig(task_id=task_id, id='no-url')),
        f'{binding}: create without url is InvalidParams',
    )
    await expect_error(
        InvalidParamsError,
        client.create_task_push_notification_config(
            TaskPushNotificationConfig(task_id=task_id, url='http://169.254.169.254/latest/meta-data')
        ),
        f'{binding}: create with a metadata-service url is InvalidParams',
    )

    await client.create_task_push_notification_config(
        TaskPushNotificationConfig(tenant='acme', task_id=task_id, id='cfg-tenant', url=HOOK + '/t')
    )
    in_tenant = await client.list_task_push_notification_configs(
        ListTaskPushNotificationConfigsRequest(tenant='acme', task_id=task_id)
    )
    outside = await client.list_task_push_notification_configs(
        ListTaskPushNotificationConfigsRequest(task_id=task_id)
    )
    check([c.id for c in in_tenant.configs] == ['cfg-tenant'], f'{binding}: the tenant sees its config')
    check('cfg-tenant' not in [c.id for c in outside.configs], f'{binding}: the default tenant does not')
    if API_KEY:
        anonymous = client_for(binding, None)
        try:
            await anonymous.list_task_push_notification_configs(ListTaskPushNotificationConfigsRequest(task_id=task_id))
        except Exception as e:  # the SDKs raise their HTTP error for a 401
            check('401' in str(e) or 'nauthorized' in str(e), f'{binding}: without a key the hub answers 401 ({type(e).__name__})')
        else:
            raise AssertionError(f'{binding}: a client without a key listed the configs')
        other = client_for(binding, OTHER_KEY)
        await expect_error(
            TaskNotFoundError,
            other.list_task_push_notification_configs(ListTaskPushNotificationConfigsRequest(task_id=task_id)),
            f'{binding}: another principal is told the task does not exist',
        )
    await client.close()


async def main() -> None:
    for binding in ['JSONRPC', 'HTTP+JSON']:
        await scenario(binding)
    print('interop: all checks passed', flush=True)


asyncio.run(main())
