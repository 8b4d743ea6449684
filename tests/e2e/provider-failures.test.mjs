// Every way a model endpoint fails: each ends the reply with a final
// fragment carrying the generic apology, is counted in /healthz, leaves the
// client's connection usable, and is retried only before the first token
// and only when another try can help.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { FragmentStream, connect } from './lib/hub.mjs';
import { startModelServer } from './lib/model-server.mjs';
import { createChat, getChat, messagesOf } from './lib/rest.mjs';
import { freePort, startStack } from './lib/stack.mjs';
import { devToken } from './lib/tokens.mjs';

const FAILED = 'Sorry, the reply could not be completed.';
const RETRIES = 2;
let model;
let stack;
const extraStacks = [];

function modelEnv(baseUrl) {
    return {
        AI_BASE_URL: baseUrl,
        AI_MODEL: 'failing-model',
        AI_API_KEY: 'sk-failure-tests-secret',
        AI_FIRST_TOKEN_TIMEOUT: '1',
        AI_RETRIES: String(RETRIES),
    };
}

before(async () => {
    model = await startModelServer();
    stack = await startStack({ env: modelEnv(model.baseUrl) });
});

after(async () => {
    for (const extra of extraStacks) {
        await extra.stop();
    }
    await stack?.stop();
    await model?.stop();
});

async function providerStats(target) {
    const response = await fetch(`${target.url}/healthz`);
    const health = await response.json();
    assert.ok(health.provider, `/healthz reports the provider (got ${JSON.stringify(health)})`);
    return health.provider;
}

// Starts a chat with prompt on a fresh connection, waits for the final
// assistant fragment, then checks that the same connection serves a
// working chat afterwards. Returns the reply's fragments.
async function chatOnce(target, user, prompt, { expectWorkingAfter = true } = {}) {
    const token = await devToken(user);
    const connection = await connect(target, { token });
    const id = await createChat(target, token, prompt);
    const stream = new FragmentStream(connection, id);
    const fragments = await stream.waitFor(
        (fs) => fs.some((f) => f.isFinal && f.sender === 'assistant'),
        'the final assistant fragment', 20000);
    const reply = fragments.filter((f) => f.sender === 'assistant');
    const [stored] = messagesOf(await getChat(target, token, id), 'assistant');
    assert.equal(reply.map((f) => f.text).join(''), stored.text,
        'what the client saw is what was stored');

    if (expectWorkingAfter) {
        const next = await createChat(target, token, `${prompt} (then a working chat)`);
        const after = new FragmentStream(connection, next);
        await after.waitFor((fs) => fs.some((f) => f.isFinal && f.sender === 'assistant'),
            'a reply on the same connection after the failure', 20000);
        assert.equal(connection.state, 'Connected', 'the connection stayed open');
        after.dispose();
    }
    stream.dispose();
    await connection.stop();
    return reply;
}

function assertFailedReply(reply, what) {
    const last = reply.at(-1);
    assert.equal(last.isFinal, true, `${what}: the reply ends with a final fragment`);
    assert.equal(last.text, FAILED, `${what}: the final fragment carries the generic message`);
}

// [script, requests expected, counter, how the reply ends]
const cases = [
    ['401 Unauthorized', { status: 401, body: { error: { message: 'Invalid API key' } } },
        1, 'http_auth'],
    ['429 on every try', { status: 429, headers: { 'Retry-After': '0' } },
        1 + RETRIES, 'http_rate_limited'],
    ['500 on every try', { status: 500 }, 1 + RETRIES, 'http_server'],
    ['a malformed event after two tokens', { malformedAfter: 2 }, 1, 'malformed'],
    ['a stream cut after three tokens', { cutAfter: 3 }, 1, 'cut'],
    ['a model that never sends a token', { silent: true }, 1, 'first_token_timeout'],
];

for (const [name, script, requests, counter] of cases) {
    test(`${name}: a final fragment with the generic message, ${requests} request(s)`,
        async () => {
            const prompt = `Failure case: ${name}`;
            model.script(prompt, script);
            const before = await providerStats(stack);

            const reply = await chatOnce(stack, `fail-${counter}`, prompt);
            assertFailedReply(reply, name);
            assert.equal(model.requestsFor(prompt).length, requests,
                `${name}: the model server got ${requests} request(s)`);
            if (script.silent) {
                // the first-token timeout aborts the transfer: the server sees it
                const [request] = model.requestsFor(prompt);
                const open = request.closedAt - request.receivedAt;
                assert.ok(open >= 950 && open < 1500,
                    `the silent request was closed after the 1 s timeout (${open.toFixed(0)} ms)`);
            }
            if (script.malformedAfter || script.cutAfter) {
                assert.ok(reply.length > 1, `${name}: the tokens before the failure were shown`);
            }
            const afterStats = await providerStats(stack);
            assert.equal(afterStats.failures[counter] - before.failures[counter], requests,
                `${name}: counted as ${counter} once per request`);
            assert.ok(afterStats.failed > before.failed, `${name}: the failed reply is counted`);
        });
}

test('a retryable failure before the first token is retried and the reply completes',
    async () => {
        for (const [name, first] of [['503', { status: 503 }], ['a cut', { cutAfter: 0 }]]) {
            const prompt = `Recovering after ${name}`;
            const tokens = ['Second ', 'try ', 'worked.'];
            model.script(prompt, first, { tokens });
            const before = await providerStats(stack);

            const reply = await chatOnce(stack, 'fail-retry', prompt, { expectWorkingAfter: false });
            assert.equal(model.requestsFor(prompt).length, 2, `${name}: one retry`);
            assert.equal(reply.map((f) => f.text).join(''), tokens.join(''),
                `${name}: the reply is the second answer, nothing of the first`);
            const afterStats = await providerStats(stack);
            assert.equal(afterStats.retries - before.retries, 1, `${name}: one retry counted`);
        }
    });

test('the operator log names the cause; the key never appears', async () => {
    const log = await readFile(path.join(stack.stateDir, 'stack.log'), 'utf8');
    assert.match(log, /HTTP 401: Invalid API key/, 'the 401 and the server\'s reason are logged');
    assert.match(log, /first_token_timeout/, 'the silent model is logged as such');
    assert.match(log, /malformed event stream/, 'the malformed event is logged');
    assert.ok(!log.includes('sk-failure-tests-secret'), 'the key is never logged');
});

test('connection refused is retried, then fails with the generic message', async () => {
    const closedPort = await freePort();
    const refused = await startStack({ env: modelEnv(`http://127.0.0.1:${closedPort}/v1`) });
    extraStacks.push(refused);

    const reply = await chatOnce(refused, 'fail-refused', 'Anyone there?',
        { expectWorkingAfter: false });
    assertFailedReply(reply, 'connection refused');
    const stats = await providerStats(refused);
    assert.equal(stats.failures.connect, 1 + RETRIES, 'every attempt counted as connect');
    assert.equal(stats.retries, RETRIES, 'retried before the first token');
});

test('a host name that does not resolve fails at once, without retries', async () => {
    const unresolvable = await startStack({
        env: modelEnv('http://model.signalr-test.invalid/v1'),
    });
    extraStacks.push(unresolvable);

    const reply = await chatOnce(unresolvable, 'fail-dns', 'Hello DNS?',
        { expectWorkingAfter: false });
    assertFailedReply(reply, 'DNS failure');
    const stats = await providerStats(unresolvable);
    assert.equal(stats.failures.dns, 1, 'counted as dns');
    assert.equal(stats.retries, 0, 'a name that does not resolve is not retried');
});
