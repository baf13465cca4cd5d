"""The official MCP Python SDK (`mcp`) as the host of `a2a-push-hub mcp-stdio`: it spawns the
stdio face, delegates a task through it to an agent built on the official A2A Python SDK, and
observes, with a `ClientExtension`, a `notifications/claude/channel` for each push the hub
accepts — the state of the task in `meta`, the agent's words only as a fenced excerpt.

usage: mcp_stdio_client.py HUB_BINARY ADMIN_URL ADMIN_TOKEN AGENT_URL
"""

import asyncio
import json
import sys

from pydantic import BaseModel

from mcp import Client, StdioServerParameters
from mcp.client.extension import ClientExtension, NotificationBinding


def step(text):
    print(f"ok: {text}", flush=True)


class ChannelParams(BaseModel):
    content: str
    meta: dict


class ChannelObserver(ClientExtension):
    """Observes the notification agent hosts inject into a live session."""

    identifier = "io.github.a2a-push-hub/channel-observer"

    def __init__(self):
        self.seen = asyncio.Queue()

    def notifications(self):
        return [NotificationBinding(method="notifications/claude/channel", params_type=ChannelParams,
                                    handler=self.on_channel)]

    async def on_channel(self, params):
        await self.seen.put(params)


async def next_state(observer, task_id, wanted):
    """The channel notifications of `task_id` until one reports `wanted`."""
    seen = []
    while True:
        params = await asyncio.wait_for(observer.seen.get(), 30)
        if params.meta.get("task_id") != task_id:
            continue
        seen.append(params)
        if params.meta.get("state") == wanted:
            return seen


async def main(binary, admin_url, token, agent):
    env = {"A2A_PUSH_HUB_ADMIN_URL": admin_url, "RUST_LOG": "warn"}
    if token:
        env["A2A_PUSH_HUB_ADMIN_TOKEN"] = token
    server = StdioServerParameters(command=binary, args=["mcp-stdio"], env=env)
    observer = ChannelObserver()
    async with Client(server, mode="legacy", extensions=[observer], read_timeout_seconds=60) as client:
        capabilities = client.server_capabilities
        assert "claude/channel" in (capabilities.experimental or {}), capabilities
        assert "notifications/claude/channel" in (client.instructions or ""), client.instructions
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert {"delegate_task", "wait_for_task", "reply_to_task"} <= tools, tools
        step("mcp-stdio: the hub's tools relayed, claude/channel declared under experimental")

        bad = await client.call_tool("get_task", {"taskId": "no-such-task"})
        assert bad.is_error, bad
        step("a tool error of the hub reaches the host as a tool error")

        asked = await client.call_tool("delegate_task", {"agent": agent, "message": "ask: a colour"})
        assert not asked.is_error, asked.content
        task_id = asked.structured_content["taskId"]
        seen = await next_state(observer, task_id, "input-required")
        question = seen[-1]
        assert question.meta["subscription_id"] == asked.structured_content["subscriptionId"], question
        assert "«agent text, untrusted: which colour?»" in question.content, question.content
        step(f"channel notifications for {task_id} up to input-required: {[p.meta.get('state') for p in seen]}")

        replied = await client.call_tool("reply_to_task", {"taskId": task_id, "message": "green"})
        assert not replied.is_error, replied.content
        seen = await next_state(observer, task_id, "completed")
        assert any('artifact "answer"' in p.content for p in seen), [p.content for p in seen]
        done = await client.call_tool("get_task", {"taskId": task_id})
        assert json.loads(done.content[0].text)["task"]["artifacts"][0]["parts"][0]["text"] == "green"
        step("after the reply, the session was told of each push up to completed")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
