// The chat over Server-Sent Events and Long Polling with the official
// client forced to each, and the fallback of an unforced client on
// locations that disable WebSockets (and SSE).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import * as signalR from '@microsoft/signalr';

import { assertFragmentShape, assertIncreasingFragmentIds } from './lib/fragments.mjs';
import {
    FragmentStream, HUB_PATH, connect, contextAfter, fragmentsExcept, replyFinished,
    streamWholeReplies, textOf,
} from './lib/hub.mjs';
import { cancelChat, createChat, getChat, messagesOf } from './lib/rest.mjs';
import { startStack } from './lib/stack.mjs';
import { devToken } from './lib/tokens.mjs';

const { ServerSentEvents, LongPolling } = signalR.HttpTransportType;

// 60 tokens at 50 a second, as in chat.test.mjs: long enough to cancel
// or leave in the middle
const REPLY_TOKENS = 60;
const NO_WEBSOCKETS_PATH = '/api/v1/chats/stream-no-websockets';
const LONG_POLLING_PATH = '/api/v1/chats/stream-long-polling';

const CASES = [
    { name: 'ServerSentEvents/json', transport: ServerSentEvents, protocol: 'json' },
    { name: 'LongPolling/json', transport: LongPolling, protocol: 'json' },
    { name: 'LongPolling/messagepack', transport: LongPolling, protocol: 'messagepack' },
];

let stack;

before(async () => {
    stack = await startStack({
        env: {
            SIGNALRD_DEMO_TOKEN_RATE: '50',
            SIGNALRD_DEMO_REPLY_TOKENS: String(REPLY_TOKENS),
        },
    });
});

after(async () => {
    await stack?.stop();
});

function transportName(connection) {
    return connection.connection.transport?.constructor?.name;
}

for (const { name, transport, protocol } of CASES) {
    test(`${name}: create, stream the whole reply, equal to the stored one`, async () => {
        const token = await devToken(`tp-${name.replace("/", "-")}-reader`);
        const connection = await connect(stack, { protocol, token, transport });
        assert.equal(connection.state, 'Connected', 'the client is connected');

        const prompt = `Is ${name} as good as a WebSocket?`;
        const id = await createChat(stack, token, prompt);
        const stream = new FragmentStream(connection, id);
        const fragments = await stream.waitFor(replyFinished, 'the end of the reply');

        fragments.forEach(assertFragmentShape);
        assert.equal(fragments[0].text, prompt, 'the first fragment is the prompt');
        const reply = fragmentsExcept(fragments, fragments[0].id);
        assert.ok(reply.length > 1, `the reply comes in several fragments (${reply.length})`);
        assertIncreasingFragmentIds(fragments);

        const stored = messagesOf(await getChat(stack, token, id), 'assistant');
        assert.equal(textOf(fragments, reply[0].id), stored[0].text,
            'the streamed text equals the stored reply');

        stream.dispose();
        await connection.stop();
    });

    test(`${name}: cancelling mid-reply ends it early; the connection goes on`, async () => {
        const token = await devToken(`tp-${name.replace("/", "-")}-canceller`);
        const connection = await connect(stack, { protocol, token, transport });
        const id = await createChat(stack, token, 'A long story, please.');
        const stream = new FragmentStream(connection, id);
        await stream.waitFor((fs) => fs.length >= 4, 'a few reply fragments');

        const response = await cancelChat(stack, token, id);
        assert.equal(response.status, 204, `cancel answers 204 (got ${response.status})`);
        const fragments = await stream.waitFor(replyFinished, 'the end of the reply');
        const reply = fragmentsExcept(fragments, fragments[0].id);
        assert.match(reply.at(-1).text, /cancel/i, 'the last fragment says it was cancelled');
        assert.ok(reply.length < REPLY_TOKENS,
            `the reply stopped early (${reply.length} of ${REPLY_TOKENS})`);

        // a CancelInvocation (disposing) and a new Stream on the same connection
        stream.dispose();
        const second = new FragmentStream(connection, await createChat(stack, token, 'Hi!'));
        await second.waitFor(replyFinished, 'a reply after the cancel');
        second.dispose();
        await connection.stop();
    });

    test(`${name}: leaving mid-reply and resuming gives exactly the missed part`,
        async () => {
            const token = await devToken(`tp-${name.replace("/", "-")}-resumer`);
            const first = await connect(stack, { protocol, token, transport });
            const id = await createChat(stack, token, 'Explain resuming.');
            const stream = new FragmentStream(first, id);
            const seen = [...await stream.waitFor((fs) => fs.length >= 6, '6 fragments')];
            await first.stop();
            const last = seen.at(-1);
            assert.equal(last.isFinal, false, 'the client left in the middle of the reply');
            await sleep(300);

            const again = await connect(stack, { protocol, token, transport });
            const resumed = new FragmentStream(again, id, contextAfter(last));
            const rest = await resumed.waitFor(
                (fs) => fs.some((f) => f.isFinal && f.id === last.id), 'the end of the reply');
            const seenIds = new Set(seen.map((f) => f.fragmentId));
            assert.deepEqual(rest.filter((f) => seenIds.has(f.fragmentId)), [],
                'nothing seen is sent again');
            assertIncreasingFragmentIds([...seen, ...rest], 'seen then resumed');
            const [reply] = messagesOf(await getChat(stack, token, id), 'assistant');
            assert.equal(textOf([...seen, ...rest], reply.id), reply.text,
                'seen plus resumed is the whole stored reply');
            resumed.dispose();
            await again.stop();
        });
}

test('ServerSentEvents is never chosen for MessagePack, which it cannot carry', async () => {
    const token = await devToken('tp-sse-msgpack');
    const connection = await connect(stack, {
        protocol: 'messagepack', token, transport: null, path: NO_WEBSOCKETS_PATH,
    });
    assert.equal(transportName(connection), 'LongPollingTransport',
        'a MessagePack client skips SSE and ends up on Long Polling');
    await connection.stop();

    await assert.rejects(
        connect(stack, { protocol: 'messagepack', token, transport: ServerSentEvents }),
        /Server-Sent Events|ServerSentEvents|Text/i,
        'forcing SSE with MessagePack fails to start');
});

test('fallback: WebSockets disabled on the location, an unforced client uses SSE',
    async () => {
        const token = await devToken('tp-fallback-sse');
        const connection = await connect(stack, {
            protocol: 'json', token, transport: null, path: NO_WEBSOCKETS_PATH,
        });
        assert.equal(transportName(connection), 'ServerSentEventsTransport',
            'the client fell back to Server-Sent Events');
        const stream = new FragmentStream(connection, await createChat(stack, token, 'SSE?'));
        await stream.waitFor(replyFinished, 'a reply over the fallback');
        stream.dispose();
        await connection.stop();
    });

test('fallback: WebSockets and SSE disabled, an unforced client uses Long Polling',
    async () => {
        const token = await devToken('tp-fallback-lp');
        const connection = await connect(stack, {
            protocol: 'json', token, transport: null, path: LONG_POLLING_PATH,
        });
        assert.equal(transportName(connection), 'LongPollingTransport',
            'the client fell back to Long Polling');
        const stream = new FragmentStream(connection, await createChat(stack, token, 'LP?'));
        await stream.waitFor(replyFinished, 'a reply over the fallback');
        stream.dispose();
        await connection.stop();
    });

test('an unforced client on the main location still takes WebSockets', async () => {
    const token = await devToken('tp-default');
    const connection = await connect(stack, { protocol: 'json', token, transport: null });
    assert.equal(transportName(connection), 'WebSocketTransport', 'WebSockets come first');
    await connection.stop();
});

test('negotiate lists what each location enables, SSE as text only', async () => {
    const token = await devToken('tp-negotiate');
    const expected = {
        [HUB_PATH]: { WebSockets: ['Text', 'Binary'], ServerSentEvents: ['Text'],
            LongPolling: ['Text', 'Binary'] },
        [NO_WEBSOCKETS_PATH]: { ServerSentEvents: ['Text'], LongPolling: ['Text', 'Binary'] },
        [LONG_POLLING_PATH]: { LongPolling: ['Text', 'Binary'] },
    };
    for (const [path, transports] of Object.entries(expected)) {
        const response = await fetch(`${stack.url}${path}/negotiate?negotiateVersion=1`, {
            method: 'POST', headers: { Authorization: `Bearer ${token}` },
        });
        assert.equal(response.status, 200, `${path}: negotiate answers 200`);
        const body = await response.json();
        const listed = Object.fromEntries(body.availableTransports
            .map((t) => [t.transport, t.transferFormats]));
        assert.deepEqual(listed, transports, `${path}: the transports offered`);
    }
});

test('many connections over both HTTP transports, requests spread over both workers',
    async () => {
        const count = 12;
        const connections = await Promise.all(Array.from({ length: count }, async (_, i) => {
            const token = await devToken(`tp-spread-${i % 3}`);
            const transport = i % 2 === 0 ? LongPolling : ServerSentEvents;
            return { token, connection: await connect(stack, { protocol: 'json', token, transport }) };
        }));
        await streamWholeReplies(stack, connections, 'spread');
        await Promise.all(connections.map(({ connection }) => connection.stop()));

        // the access log names the worker of every request: a connection
        // whose requests met two workers went through the relay
        const lines = (await stack.accessLog()).split('\n');
        const workersOf = new Map();
        for (const line of lines) {
            const conn = /conn=(\S+)/.exec(line)?.[1];
            const pid = /pid=(\d+)/.exec(line)?.[1];
            if (conn && conn !== '-' && pid && !line.includes('/negotiate')) {
                workersOf.set(conn, (workersOf.get(conn) ?? new Set()).add(pid));
            }
        }
        const allPids = new Set([...workersOf.values()].flatMap((s) => [...s]));
        assert.ok(allPids.size >= 2, `requests reached both workers (${[...allPids]})`);
        const relayed = [...workersOf.values()].filter((s) => s.size > 1).length;
        assert.ok(relayed > 0,
            `some connection had its requests on two workers (${relayed} of ${workersOf.size})`);
    });

test('the stack stops cleanly after all that', async () => {
    const result = await stack.stop();
    assert.deepEqual(result, { code: 0, signal: null }, `run-stack exits 0\n${stack.logTail()}`);
    assert.doesNotMatch(stack.logTail(2000), /AddressSanitizer|LeakSanitizer|runtime error:|\[alert\]/,
        'no sanitizer report and no alert');
});
