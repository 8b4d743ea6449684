// The OpenAI-compatible provider against a scripted streaming server:
// what the daemon asks the model, how the tokens reach the official
// client, and that cancelling a reply closes the model's connection.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { assertFragmentShape, assertIncreasingFragmentIds } from './lib/fragments.mjs';
import {
    FragmentStream, PROTOCOLS, connect, fragmentsExcept, replyFinished, textOf,
} from './lib/hub.mjs';
import { defaultTokens, startModelServer } from './lib/model-server.mjs';
import { api, cancelChat, createChat, getChat, messagesOf } from './lib/rest.mjs';
import { startStack } from './lib/stack.mjs';
import { devToken } from './lib/tokens.mjs';

const API_KEY = 'sk-test-0123456789-provider-secret';
const SYSTEM_PROMPT = 'You are the test assistant. Answer briefly.';
let model;
let stack;

before(async () => {
    model = await startModelServer();
    stack = await startStack({
        env: {
            AI_BASE_URL: model.baseUrl,
            AI_MODEL: 'test-model-7b',
            AI_API_KEY: API_KEY,
            AI_SYSTEM_PROMPT: SYSTEM_PROMPT,
            AI_TEMPERATURE: '0.3',
            AI_MAX_TOKENS: '256',
            SIGNALRD_HISTORY_MESSAGES: '3',
        },
    });
});

after(async () => {
    await stack?.stop();
    await model?.stop();
});

// the fragments of the last assistant message, once it is final
async function waitForReply(stream, seen = 0) {
    const fragments = await stream.waitFor(
        (fs) => fs.length > seen + 1 && fs.at(-1).isFinal && fs.at(-1).sender === 'assistant',
        'a final assistant fragment');
    const last = fragments.at(-1);
    return fragments.filter((f) => f.id === last.id);
}

async function putTurn(token, id, text) {
    const response = await api(stack, 'PUT', `/api/v1/chats/${id}`, {
        token, body: { id, prompt: { text } },
    });
    assert.equal(response.status, 202, `PUT answers 202 (got ${response.status}: ${response.text})`);
}

test('the request carries the model, the system prompt, the history in order, '
    + 'stream: true and the key', async () => {
    const token = await devToken('provider-shape');
    const connection = await connect(stack, { token });
    const prompts = ['Shape one: what is SSE?', 'Shape two: and WebSocket?',
        'Shape three: which is better?'];

    const id = await createChat(stack, token, prompts[0]);
    const stream = new FragmentStream(connection, id);
    const first = await waitForReply(stream);
    await putTurn(token, id, prompts[1]);
    const second = await waitForReply(stream, stream.fragments.length);
    await putTurn(token, id, prompts[2]);
    await waitForReply(stream, stream.fragments.length);

    const [r1, r2, r3] = prompts.map((p) => model.requestsFor(p));
    assert.equal(r1.length, 1, 'one request for the first turn');
    const request = r3[0];
    assert.equal(request.method, 'POST');
    assert.equal(request.path, '/v1/chat/completions', 'POST {base}/chat/completions');
    assert.equal(request.headers.authorization, `Bearer ${API_KEY}`, 'the key as a bearer token');
    assert.match(request.headers['content-type'], /^application\/json/);
    assert.equal(request.body.model, 'test-model-7b', 'the configured model');
    assert.equal(request.body.stream, true, 'stream: true');
    assert.equal(request.body.temperature, 0.3, 'the configured temperature');
    assert.equal(request.body.max_tokens, 256, 'the configured max tokens');

    // history_messages = 3: the system prompt, then the last three turns
    const text = (fragments) => fragments.map((f) => f.text).join('');
    assert.deepEqual(request.body.messages, [
        { role: 'system', content: SYSTEM_PROMPT },
        { role: 'user', content: prompts[1] },
        { role: 'assistant', content: text(second) },
        { role: 'user', content: prompts[2] },
    ], 'the third request holds the system prompt and the last three turns in order');
    assert.deepEqual(r2[0].body.messages, [
        { role: 'system', content: SYSTEM_PROMPT },
        { role: 'user', content: prompts[0] },
        { role: 'assistant', content: text(first) },
        { role: 'user', content: prompts[1] },
    ], 'the second request holds the first turn and its reply');

    const log = await readFile(path.join(stack.stateDir, 'stack.log'), 'utf8');
    assert.ok(!log.includes(API_KEY), 'the key is never logged');
    stream.dispose();
    await connection.stop();
});

for (const protocol of PROTOCOLS) {
    test(`${protocol}: tokens arrive in order, one fragment each, and the stored reply `
        + 'is their concatenation', async () => {
        const token = await devToken(`provider-order-${protocol}`);
        const connection = await connect(stack, { protocol, token });
        const prompt = `Order check over ${protocol}`;
        // multi-byte characters, and events written a few bytes at a time,
        // so that chunk boundaries fall inside lines and characters
        const tokens = ['Grüße ', 'aus ', '東京 ', 'and ', '🙂 ', 'a "quoted" ', 'line\n', 'end.'];
        model.script(prompt, { tokens, delayMs: 15, split: 7 });

        const id = await createChat(stack, token, prompt);
        const stream = new FragmentStream(connection, id);
        const reply = await waitForReply(stream);

        reply.forEach(assertFragmentShape);
        assertIncreasingFragmentIds(stream.fragments);
        const content = reply.filter((f) => f.text !== '');
        assert.deepEqual(content.map((f) => f.text), tokens,
            'each token is one fragment, in the order the model sent them');
        assert.equal(reply.at(-1).isFinal, true, 'the reply ends with a final fragment');
        assert.equal(reply.filter((f) => f.isFinal).length, 1, 'only one fragment is final');

        const [stored] = messagesOf(await getChat(stack, token, id), 'assistant');
        assert.equal(stored.text, tokens.join(''), 'the stored reply is the tokens concatenated');
        assert.equal(textOf(stream.fragments, stored.id), stored.text,
            'the streamed text equals the stored text');
        stream.dispose();
        await connection.stop();
    });
}

test('tokens reach the client as the model sends them, not at the end', async () => {
    const token = await devToken('provider-live');
    const connection = await connect(stack, { token });
    const prompt = 'Live tokens, please';
    model.script(prompt, { tokens: defaultTokens(prompt, 6), delayMs: 300 });

    const id = await createChat(stack, token, prompt);
    const stream = new FragmentStream(connection, id);
    const arrivals = [];
    const started = performance.now();
    await stream.waitFor((fs) => {
        while (arrivals.length < fs.length) {
            arrivals.push(performance.now() - started);
        }
        return fs.filter((f) => f.sender === 'assistant').length >= 2;
    }, 'two assistant fragments');
    const [request] = model.requestsFor(prompt);
    assert.ok(request.sent.length <= 3,
        `the second token was shown before the model had sent a fourth (${request.sent.length})`);
    await waitForReply(stream);
    stream.dispose();
    await connection.stop();
});

test('cancel mid-stream: the model server sees its connection closed within 100 ms',
    async (t) => {
        const token = await devToken('provider-cancel');
        const connection = await connect(stack, { token });
        const prompt = 'Never stop talking';
        model.script(prompt, { forever: true, delayMs: 20 });

        const id = await createChat(stack, token, prompt);
        const stream = new FragmentStream(connection, id);
        await stream.waitFor((fs) => fs.length >= 5, 'a few reply fragments');
        const [request] = model.requestsFor(prompt);
        assert.equal(request.closedAt, null, 'the model is still streaming');

        const cancelledAt = performance.now();
        const response = await cancelChat(stack, token, id);
        assert.equal(response.status, 204, `cancel answers 204 (got ${response.status})`);
        for (let i = 0; i < 100 && request.closedAt === null; i++) {
            await sleep(5);
        }
        assert.notEqual(request.closedAt, null, 'the model server saw its connection close');
        const elapsed = request.closedAt - cancelledAt;
        assert.ok(elapsed < 100, `closed ${elapsed.toFixed(1)} ms after the cancel was sent`);
        t.diagnostic(`model connection closed ${elapsed.toFixed(1)} ms after the cancel`);

        const reply = await waitForReply(stream);
        assert.match(reply.at(-1).text, /cancel/i, 'the final fragment says it was cancelled');
        const [stored] = messagesOf(await getChat(stack, token, id), 'assistant');
        assert.equal(textOf(stream.fragments, stored.id), stored.text,
            'what was streamed before the cancel is what was stored');
        const sentBefore = request.sent.length;
        await sleep(200);
        assert.equal(request.sent.length, sentBefore, 'the model stopped generating');

        // the connection goes on working
        const next = await createChat(stack, token, 'After the cancel');
        await waitForReply(new FragmentStream(connection, next));
        stream.dispose();
        await connection.stop();
    });

test('with cancel_unwatched on, the last viewer leaving closes the model connection '
    + 'within 100 ms', async () => {
    const watched = await startStack({
        env: {
            AI_BASE_URL: model.baseUrl,
            AI_MODEL: 'test-model-7b',
            SIGNALRD_CANCEL_UNWATCHED: 'on',
        },
    });
    try {
        const token = await devToken('provider-unwatched');
        const connection = await connect(watched, { token });
        const prompt = 'Talk until nobody listens';
        model.script(prompt, { forever: true, delayMs: 20 });

        const id = await createChat(watched, token, prompt);
        const first = new FragmentStream(connection, id);
        const second = new FragmentStream(connection, id);
        await first.waitFor((fs) => fs.length >= 4, 'a few reply fragments');
        await second.waitFor((fs) => fs.length >= 4, 'a few reply fragments');
        const [request] = model.requestsFor(prompt);

        first.dispose();
        await sleep(150);
        assert.equal(request.closedAt, null, 'one viewer left, one remains: the model goes on');

        const leftAt = performance.now();
        second.dispose();
        for (let i = 0; i < 100 && request.closedAt === null; i++) {
            await sleep(5);
        }
        assert.notEqual(request.closedAt, null, 'the model server saw its connection close');
        const elapsed = request.closedAt - leftAt;
        assert.ok(elapsed < 100, `closed ${elapsed.toFixed(1)} ms after the last viewer left`);

        const replay = new FragmentStream(connection, id);
        const reply = await waitForReply(replay);
        assert.match(reply.at(-1).text, /cancel/i, 'the stored reply ends as cancelled');
        replay.dispose();
        await connection.stop();
    } finally {
        await watched.stop();
    }
});
