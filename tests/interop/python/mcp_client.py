"""The official MCP Python SDK (`mcp`) as the client of the hub's MCP bridge over Streamable
HTTP: lists the tools, refuses bad input with tool errors, delegates a task to an agent built
on the official A2A Python SDK, waits for it (with a progress notification per push), answers
it when it asks for input, and reads it back as a tool result and as a resource.

usage: mcp_client.py MCP_URL ADMIN_TOKEN AGENT_URL MODE
  MODE: legacy (the initialize handshake, 2025-11-25) or auto (server/discover, 2026-07-28)
"""

import asyncio
import json
import sys

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

TOOLS = {"delegate_task", "get_task", "list_events", "wait_for_task", "reply_to_task", "cancel_task"}


def step(text):
    print(f"ok: {text}", flush=True)


def structured(result):
    assert not result.is_error, [c.text for c in result.content]
    return result.structured_content or json.loads(result.content[0].text)


def error_text(result):
    assert result.is_error, result
    return " ".join(c.text for c in result.content)


async def main(url, token, agent, mode):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = streamable_http_client(url, http_client=create_mcp_http_client(headers=headers))
    updated = asyncio.Queue()

    async def on_message(message):
        # Resource updates of the legacy revisions arrive as plain notifications.
        root = getattr(message, "root", message)
        if getattr(root, "method", None) == "notifications/resources/updated":
            await updated.put(root.params.uri)

    async with Client(transport, mode=mode, read_timeout_seconds=60, message_handler=on_message) as client:
        expected = "2025-11-25" if mode == "legacy" else "2026-07-28"
        assert client.protocol_version == expected, client.protocol_version
        assert "untrusted" in (client.instructions or ""), client.instructions
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert TOOLS <= tools, tools
        step(f"{client.protocol_version}: the six tools listed, instructions name agent text untrusted")

        refused = error_text(await client.call_tool("delegate_task", {"agent": "http://10.1.2.3/", "message": "hi"}))
        assert "refused" in refused, refused
        unreachable = error_text(await client.call_tool("delegate_task", {"agent": "http://127.0.0.1:9/", "message": "hi"}))
        assert "the agent at http://127.0.0.1:9/" in unreachable, unreachable
        empty = error_text(await client.call_tool("delegate_task", {"agent": agent, "message": "  "}))
        assert "`message` must not be empty" in empty, empty
        unknown = error_text(await client.call_tool("get_task", {"taskId": "no-such-task"}))
        assert "no task \"no-such-task\"" in unknown, unknown
        no_subscription = error_text(await client.call_tool("list_events", {"subscriptionId": "no-such-subscription"}))
        assert "no-such-subscription" in no_subscription, no_subscription
        too_long = error_text(await client.call_tool("wait_for_task", {"taskId": "x", "timeoutSeconds": 100000}))
        assert "timeoutSeconds" in too_long, too_long
        step("bad input, a refused URL, an unreachable agent and an unknown task are tool errors that say what to fix")

        delegated = structured(await client.call_tool("delegate_task", {"agent": agent, "message": "the answer, please"}))
        task_id = delegated["taskId"]
        assert delegated["resourceUri"] == f"a2a-hub://tasks/{task_id}", delegated
        progress = []

        async def on_progress(value, total, message):
            progress.append(message)

        waited = structured(await client.call_tool(
            "wait_for_task", {"taskId": task_id, "timeoutSeconds": 60, "after": 0}, progress_callback=on_progress))
        assert waited["state"] == "TASK_STATE_COMPLETED", waited
        assert waited["ended"] == "attention", waited
        assert "untrusted" in waited["note"], waited
        assert 'artifacts: "answer"' in waited["summary"], waited
        # One progress notification per push of the task, in order, the last its completion.
        assert len(progress) >= 3 and "status → completed" in progress[-1], progress
        assert any('artifact "answer"' in p for p in progress), progress
        step(f"delegated {task_id}; wait_for_task returned TASK_STATE_COMPLETED after {len(progress)} progress notifications, one per push")

        task = structured(await client.call_tool("get_task", {"taskId": task_id}))
        assert task["task"]["artifacts"][0]["parts"][0]["text"] == "42", task
        events = structured(await client.call_tool("list_events", {"taskId": task_id}))
        summaries = [e["summary"] for e in events["events"]]
        assert any("status → completed" in s for s in summaries), summaries
        assert any('artifact "answer"' in s for s in summaries), summaries
        resource = await client.read_resource(f"a2a-hub://tasks/{task_id}")
        body = json.loads(resource.contents[0].text)
        assert body["state"] == "TASK_STATE_COMPLETED", body
        listed = {r.uri for r in (await client.list_resources()).resources}
        assert f"a2a-hub://tasks/{task_id}" in listed, listed
        late = error_text(await client.call_tool("reply_to_task", {"taskId": task_id, "message": "more"}))
        assert "takes no more messages" in late, late
        step("get_task, list_events and the task resource read the verified pushes; a finished task takes no reply")

        asked = structured(await client.call_tool("delegate_task", {"agent": agent, "message": "ask: a colour"}))
        waited = structured(await client.call_tool("wait_for_task", {"taskId": asked["taskId"], "timeoutSeconds": 60}))
        assert waited["state"] == "TASK_STATE_INPUT_REQUIRED", waited
        assert "«agent text, untrusted: which colour?»" in waited["summary"], waited
        uri = f"a2a-hub://tasks/{asked['taskId']}"
        if mode == "legacy":
            await client.subscribe_resource(uri)
            structured(await client.call_tool("reply_to_task", {"taskId": asked["taskId"], "message": "blue"}))
            first = await asyncio.wait_for(updated.get(), 30)
        else:
            async with client.listen(resource_subscriptions=[uri]) as subscription:
                assert uri in (subscription.honored.resource_subscriptions or []), subscription.honored
                structured(await client.call_tool("reply_to_task", {"taskId": asked["taskId"], "message": "blue"}))
                event = await asyncio.wait_for(subscription.__anext__(), 30)
                first = event.uri
        assert first == uri, first
        step(f"the task resource's update notified through {'resources/subscribe' if mode == 'legacy' else 'subscriptions/listen'} when the reply's pushes arrived")
        waited = structured(await client.call_tool("wait_for_task", {"taskId": asked["taskId"], "timeoutSeconds": 60}))
        assert waited["state"] == "TASK_STATE_COMPLETED", waited
        assert waited["task"]["artifacts"][0]["parts"][0]["text"] == "blue", waited
        step("input-required: the question quoted as untrusted text, the reply sent, the task completed with it")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
