// Resuming: a client that kept the ids of the last fragment it saw
// reconnects and must get exactly what it missed, nothing twice.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { assertIncreasingFragmentIds } from './lib/fragments.mjs';
import {
    FragmentStream, PROTOCOLS, connect, contextAfter, fragmentsExcept, textOf,
} from './lib/hub.mjs';
import { api, createChat, getChat, messagesOf } from './lib/rest.mjs';
import { startStack } from './lib/stack.mjs';
import { devToken } from './lib/tokens.mjs';

// 50 tokens at 20 a second: two and a half seconds to leave and come back
const REPLY_TOKENS = 50;
let stack;

before(async () => {
    stack = await startStack({
        env: {
            SIGNALRD_DEMO_TOKEN_RATE: '20',
            SIGNALRD_DEMO_REPLY_TOKENS: String(REPLY_TOKENS),
        },
    });
});

after(async () => {
    await stack?.stop();
});

// Streams a new chat on its own connection until `count` fragments
// arrived, then stops that connection as a client losing its network
// would. Returns what the client had seen by then.
async function watchThenLeave(protocol, token, prompt, count) {
    const connection = await connect(stack, { protocol, token });
    const id = await createChat(stack, token, prompt);
    const stream = new FragmentStream(connection, id);
    await stream.waitFor((fs) => fs.length >= count, `${count} fragments`);
    await connection.stop();
    return { id, seen: [...stream.fragments] };
}

// Checks the union of the two batches against the stored conversation.
async function assertExactResume(token, id, seen, resumed) {
    const seenIds = new Set(seen.map((f) => f.fragmentId));
    const repeated = resumed.filter((f) => seenIds.has(f.fragmentId));
    assert.deepEqual(repeated, [], 'no fragment the client had is sent again');

    const all = [...seen, ...resumed];
    assertIncreasingFragmentIds(all, 'seen then resumed');

    const conversation = await getChat(stack, token, id);
    const [prompt] = messagesOf(conversation, 'user');
    const [reply] = messagesOf(conversation, 'assistant');
    assert.equal(all.filter((f) => f.id === prompt.id).length, 1,
        'the user\'s turn arrives once in all');
    assert.equal(textOf(all, reply.id), reply.text,
        'what was seen plus what was resumed is the whole stored reply');
}

function finalOf(messageId) {
    return (fragments) => fragments.some((f) => f.isFinal && f.id === messageId);
}

for (const protocol of PROTOCOLS) {
    test(`${protocol}: reconnecting mid-reply with the last ids gives exactly the missed part`,
        async () => {
            const token = await devToken(`resume-${protocol}-live`);
            const { id, seen } = await watchThenLeave(protocol, token, 'Explain resuming.', 6);
            const last = seen.at(-1);
            assert.equal(last.isFinal, false, 'the client left in the middle of the reply');

            // fragments keep coming while the client is away
            await sleep(500);

            const connection = await connect(stack, { protocol, token });
            const stream = new FragmentStream(connection, id, contextAfter(last));
            const resumed = await stream.waitFor(finalOf(last.id), 'the end of the reply');
            assert.equal(resumed[0].id, last.id,
                'resuming starts with the rest of the message in progress');
            await assertExactResume(token, id, seen, resumed);

            stream.dispose();
            await connection.stop();
        });
}

test('resuming from the middle of a reply that has since completed gives exactly the rest',
    async () => {
        const token = await devToken('resume-completed');
        const { id, seen } = await watchThenLeave('json', token, 'A finished reply.', 5);
        const last = seen.at(-1);

        // wait for the end on another connection: the client is still away
        const watcher = await connect(stack, { protocol: 'json', token });
        await new FragmentStream(watcher, id).waitFor(finalOf(last.id), 'the reply to finish');
        await watcher.stop();

        const connection = await connect(stack, { protocol: 'messagepack', token });
        const stream = new FragmentStream(connection, id, contextAfter(last));
        const resumed = await stream.waitFor(finalOf(last.id), 'the rest of the reply');
        await sleep(300);
        assert.equal(stream.fragments.length, resumed.length,
            'nothing follows the final fragment of the completed reply');
        await assertExactResume(token, id, seen, stream.fragments);

        stream.dispose();
        await connection.stop();
    });

test('resuming after the user\'s turn gives the whole reply and not the turn again',
    async () => {
        const token = await devToken('resume-after-turn');
        const { id, seen } = await watchThenLeave('json', token, 'From the top.', 1);
        const turn = seen[0];

        const connection = await connect(stack, { protocol: 'json', token });
        const stream = new FragmentStream(connection, id, contextAfter(turn));
        const resumed = await stream.waitFor(
            (fs) => fs.some((f) => f.isFinal && f.id !== turn.id), 'the whole reply');
        assert.deepEqual(resumed.filter((f) => f.id === turn.id), [],
            'the user\'s turn is not sent again');
        await assertExactResume(token, id, seen.slice(0, 1), resumed);

        stream.dispose();
        await connection.stop();
    });

test('resuming at the very end waits, then follows the next turn live', async () => {
    const token = await devToken('resume-at-end');
    const connection = await connect(stack, { protocol: 'json', token });
    const id = await createChat(stack, token, 'Short one.');
    const full = new FragmentStream(connection, id);
    const first = await full.waitFor(
        (fs) => fs.length > 1 && fs.at(-1).isFinal && fs.at(-1).id !== fs[0].id, 'the reply');
    full.dispose();

    const stream = new FragmentStream(connection, id, contextAfter(first.at(-1)));
    await sleep(500);
    assert.deepEqual(stream.fragments, [], 'nothing is replayed after the last fragment');

    const response = await api(stack, 'PUT', `/api/v1/chats/${id}`, {
        token, body: { id, prompt: { text: 'And then?' } },
    });
    assert.ok(response.status >= 200 && response.status < 300,
        `PUT /api/v1/chats/{id} succeeds (got ${response.status}: ${response.text})`);
    const next = await stream.waitFor(
        (fs) => fs.length > 1 && fs.at(-1).isFinal && fs.at(-1).id !== fs[0].id,
        'the new turn and its reply');
    assert.equal(next[0].text, 'And then?', 'the first fragment is the new user turn');
    assertIncreasingFragmentIds([...first, ...next], 'first turn then second');

    const conversation = await getChat(stack, token, id);
    assert.equal(messagesOf(conversation, 'assistant')[1].text, textOf(next, next.at(-1).id),
        'the live reply equals the stored one');
    assert.equal(fragmentsExcept(next, next[0].id, next.at(-1).id).length, 0,
        'the second batch holds only the new turn and its reply');
    stream.dispose();
    await connection.stop();
});
