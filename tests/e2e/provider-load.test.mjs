// 200 replies streamed at once from one daemon, each from its own request
// to the model server, all on the daemon's one event loop.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { FragmentStream, connect, textOf } from './lib/hub.mjs';
import { defaultTokens, startModelServer } from './lib/model-server.mjs';
import { createChat, getChat, messagesOf } from './lib/rest.mjs';
import { startStack } from './lib/stack.mjs';
import { devToken } from './lib/tokens.mjs';

// 20 users, 10 chats each: within the dev stack's 50 calls per user and
// the hub's 32 streams per connection
const USERS = 20;
const CHATS_PER_USER = 10;
const TOKENS = 20;
let model;
let stack;

before(async () => {
    model = await startModelServer();
    stack = await startStack({
        env: { AI_BASE_URL: model.baseUrl, AI_MODEL: 'load-model' },
    });
});

after(async () => {
    await stack?.stop();
    await model?.stop();
});

test(`${USERS * CHATS_PER_USER} concurrent streams from one daemon complete correctly`,
    async () => {
        const users = await Promise.all(Array.from({ length: USERS }, async (_, u) => {
            const token = await devToken(`load-user-${u}`);
            return { token, connection: await connect(stack, { token }) };
        }));
        // no stream sends a token before every request has arrived, so
        // the streams overlap however slowly a loaded machine opens them
        let openGate;
        const gate = new Promise((resolve) => { openGate = resolve; });
        const prompts = [];
        for (let u = 0; u < USERS; u++) {
            for (let c = 0; c < CHATS_PER_USER; c++) {
                const prompt = `load ${u} ${c} concurrent stream`;
                model.script(prompt, { tokens: defaultTokens(prompt, TOKENS), delayMs: 25,
                    gate });
                prompts.push({ user: users[u], prompt });
            }
        }

        const chats = await Promise.all(prompts.map(async ({ user, prompt }) => {
            const id = await createChat(stack, user.token, prompt);
            return { user, prompt, id, stream: new FragmentStream(user.connection, id) };
        }));
        const deadline = Date.now() + 30000;
        while (model.requests.length < prompts.length && Date.now() < deadline) {
            await new Promise((resolve) => { setTimeout(resolve, 20); });
        }
        assert.equal(model.requests.length, prompts.length,
            'the daemon had every request open at once');
        openGate();
        await Promise.all(chats.map(({ stream }) => stream.waitFor(
            (fs) => fs.some((f) => f.isFinal && f.sender === 'assistant'),
            'the end of the reply', 60000)));

        const requests = prompts.map(({ prompt }) => model.requestsFor(prompt));
        assert.ok(requests.every((r) => r.length === 1), 'one request per chat, no retry');
        const starts = requests.map(([r]) => r.receivedAt);
        const ends = requests.map(([r]) => r.closedAt);
        assert.ok(Math.max(...starts) < Math.min(...ends),
            'every request had started before the first one ended: they ran at once');

        for (const { user, prompt, id, stream } of chats) {
            const expected = defaultTokens(prompt, TOKENS).join('');
            const [stored] = messagesOf(await getChat(stack, user.token, id), 'assistant');
            assert.equal(stored.text, expected, `${prompt}: the stored reply is complete`);
            assert.equal(textOf(stream.fragments, stored.id), expected,
                `${prompt}: the streamed reply is complete`);
            stream.dispose();
        }
        await Promise.all(users.map(({ connection }) => connection.stop()));
    });
