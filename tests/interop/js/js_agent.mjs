// An A2A agent built with the official JS SDK (@a2a-js/sdk 1.3.0), pushing with the SDK's own
// sender: a peer the hub's inbound role receives from.
//
// Usage: node js_agent.mjs
//
// Listens on 127.0.0.1 on an ephemeral port and prints `LISTENING <port>`; serves JSON-RPC at
// `/`. Each task: SUBMITTED, WORKING; it then waits (up to 30 s) until a push-notification config
// is registered for the task, and finishes with an artifact and COMPLETED.
import { randomUUID } from 'node:crypto';
import express from 'express';
import { Role, TaskState } from '@a2a-js/sdk';
import {
  AgentEvent,
  DefaultPushNotificationSender,
  DefaultRequestHandler,
  InMemoryPushNotificationStore,
  InMemoryTaskStore,
} from '@a2a-js/sdk/server';
import { agentCardHandler, jsonRpcHandler, UserBuilder } from '@a2a-js/sdk/server/express';

const text = (value) => ({ content: { $case: 'text', value }, metadata: undefined, filename: '', mediaType: 'text/plain' });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const pushStore = new InMemoryPushNotificationStore();

class WaitsForAWebhook {
  cancelTask = async () => {};

  async execute(requestContext, bus) {
    const { taskId, contextId } = requestContext;
    const status = (state) => ({ state, timestamp: new Date().toISOString(), message: undefined });
    if (!requestContext.task) {
      bus.publish(AgentEvent.task({
        id: taskId, contextId, status: status(TaskState.TASK_STATE_SUBMITTED),
        artifacts: [], history: [requestContext.userMessage], metadata: undefined,
      }));
    }
    bus.publish(AgentEvent.statusUpdate({ taskId, contextId, status: status(TaskState.TASK_STATE_WORKING), metadata: undefined }));
    for (let i = 0; i < 300; i++) {
      const configs = await pushStore.load(taskId, requestContext.context);
      if (configs.length > 0) break;
      await sleep(100);
    }
    bus.publish(AgentEvent.artifactUpdate({
      taskId, contextId, lastChunk: true, append: false, metadata: undefined,
      artifact: { artifactId: randomUUID(), name: 'answer', description: '', parts: [text('42')], metadata: undefined, extensions: [] },
    }));
    bus.publish(AgentEvent.statusUpdate({ taskId, contextId, status: status(TaskState.TASK_STATE_COMPLETED), metadata: undefined }));
    bus.finished();
  }
}

const app = express();
const server = app.listen(0, '127.0.0.1', () => {
  const port = server.address().port;
  const card = {
    name: 'interop-js-agent',
    description: 'waits for a webhook, then completes',
    supportedInterfaces: [{ url: `http://127.0.0.1:${port}/`, protocolBinding: 'JSONRPC', tenant: '', protocolVersion: '1.0' }],
    version: '1.0.0',
    capabilities: { streaming: true, pushNotifications: true, extensions: [], extendedAgentCard: false },
    securitySchemes: {},
    securityRequirements: [],
    defaultInputModes: ['text'],
    defaultOutputModes: ['text'],
    skills: [{ id: 'answer', name: 'answer', description: 'answers', tags: ['test'], examples: [], inputModes: ['text'], outputModes: ['text'], securityRequirements: [] }],
    documentationUrl: '',
    signatures: [],
  };
  const sender = new DefaultPushNotificationSender(pushStore, { timeout: 5000 });
  const handler = new DefaultRequestHandler(card, new InMemoryTaskStore(), new WaitsForAWebhook(), undefined, pushStore, sender);
  app.use('/.well-known/agent-card.json', agentCardHandler({ agentCardProvider: handler }));
  app.use(jsonRpcHandler({ requestHandler: handler, userBuilder: UserBuilder.noAuthentication }));
  console.log(`LISTENING ${port}`);
});
