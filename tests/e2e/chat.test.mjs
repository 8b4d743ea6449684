// The chat as an application sees it: REST to start and cancel replies,
// the official client (JSON and MessagePack) to stream them.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import {
    FragmentStream, PROTOCOLS, connect, fragmentsExcept, replyFinished, textOf,
} from './lib/hub.mjs';
import { api, cancelChat, createChat, getChat, messagesOf } from './lib/rest.mjs';
import { startStack } from './lib/stack.mjs';
import { devToken } from './lib/tokens.mjs';
import { assertFragmentShape, assertIncreasingFragmentIds } from './lib/fragments.mjs';

// 60 tokens at 50 a second: a reply lasts over a second, long enough to
// cancel it in the middle, short enough to wait for several
const REPLY_TOKENS = 60;
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

for (const protocol of PROTOCOLS) {
    test(`${protocol}: a new chat streams the user's turn, then the reply as GET stores it`,
        async () => {
            const token = await devToken(`chat-${protocol}-reader`);
            const connection = await connect(stack, { protocol, token });
            const prompt = `How does ${protocol} frame a hub message?`;

            const id = await createChat(stack, token, prompt);
            const stream = new FragmentStream(connection, id);
            const fragments = await stream.waitFor(replyFinished, 'the end of the reply');

            fragments.forEach(assertFragmentShape);
            const [turn] = fragments;
            assert.equal(turn.text, prompt, 'the first fragment is the user\'s prompt');
            assert.equal(turn.isFinal, true, 'the user\'s turn is a single final fragment');

            const reply = fragmentsExcept(fragments, turn.id);
            assert.ok(reply.length > 1, `the reply comes in several fragments (${reply.length})`);
            assert.equal(new Set(reply.map((f) => f.id)).size, 1,
                'every reply fragment carries the one assistant message id');
            assert.deepEqual(reply.map((f) => f.isFinal),
                reply.map((_, i) => i === reply.length - 1),
                'only the last reply fragment is final');
            assertIncreasingFragmentIds(fragments);

            const conversation = await getChat(stack, token, id);
            assert.equal(conversation.id, id, 'GET returns the conversation asked for');
            assert.deepEqual(messagesOf(conversation, 'user').map((m) => m.text), [prompt],
                'the stored conversation holds the prompt');
            const stored = messagesOf(conversation, 'assistant');
            assert.equal(stored.length, 1, 'the stored conversation holds one reply');
            assert.equal(stored[0].id, reply[0].id, 'the stored reply has the streamed id');
            assert.equal(textOf(fragments, reply[0].id), stored[0].text,
                'the streamed text equals the stored reply');

            await sleep(500);
            assert.equal(stream.completed, false, 'the stream does not complete by itself');
            assert.equal(stream.error, null, 'the stream does not fail after the reply');
            stream.dispose();
            await connection.stop();
        });

    test(`${protocol}: cancelling through REST ends the reply with a final fragment saying so`,
        async () => {
            const token = await devToken(`chat-${protocol}-canceller`);
            const connection = await connect(stack, { protocol, token });

            const id = await createChat(stack, token, 'Write a long story, please.');
            const stream = new FragmentStream(connection, id);
            await stream.waitFor((fs) => fs.length >= 4, 'a few reply fragments');

            const response = await cancelChat(stack, token, id);
            assert.equal(response.status, 204,
                `DELETE .../cancel answers 204 (got ${response.status}: ${response.text})`);

            const fragments = await stream.waitFor(replyFinished, 'the end of the reply');
            const reply = fragmentsExcept(fragments, fragments[0].id);
            const last = reply.at(-1);
            assert.equal(last.isFinal, true, 'the cancelled reply ends with a final fragment');
            assert.match(last.text, /cancel/i, 'the final fragment says the reply was cancelled');
            assert.ok(reply.length < REPLY_TOKENS,
                `the reply stopped early (${reply.length} of ${REPLY_TOKENS} fragments)`);

            // the connection goes on working for the next chat
            const second = new FragmentStream(connection, await createChat(stack, token, 'Hi!'));
            await second.waitFor(replyFinished, 'the reply of a chat started after the cancel');
            stream.dispose();
            second.dispose();
            await connection.stop();
        });

    test(`${protocol}: disposing a subscription stops following; the connection stays usable`,
        async () => {
            const token = await devToken(`chat-${protocol}-disposer`);
            const connection = await connect(stack, { protocol, token });
            const id = await createChat(stack, token, 'Tell me about nginx.');

            const first = new FragmentStream(connection, id);
            await first.waitFor((fs) => fs.length >= 3, 'a few fragments');
            first.dispose();

            // a new Stream on the same connection replays the conversation,
            // and the reply was not cancelled by the client going away
            const again = new FragmentStream(connection, id);
            const fragments = await again.waitFor(replyFinished, 'the replayed reply');
            const reply = fragmentsExcept(fragments, fragments[0].id);
            assert.doesNotMatch(reply.at(-1).text, /cancel/i,
                'disposing a stream does not cancel the generation');
            const stored = messagesOf(await getChat(stack, token, id), 'assistant');
            assert.equal(textOf(fragments, reply[0].id), stored[0].text,
                'the replayed text equals the stored reply');
            again.dispose();
            await connection.stop();
        });
}

test('a JSON and a MessagePack client watching one conversation see the same fragments',
    async () => {
        const token = await devToken('chat-two-tabs');
        const json = await connect(stack, { protocol: 'json', token });
        const msgpack = await connect(stack, { protocol: 'messagepack', token });
        const id = await createChat(stack, token, 'Same answer for both tabs?');

        const a = new FragmentStream(json, id);
        const b = new FragmentStream(msgpack, id);
        const [fa, fb] = await Promise.all([
            a.waitFor(replyFinished, 'the reply on the JSON connection'),
            b.waitFor(replyFinished, 'the reply on the MessagePack connection'),
        ]);
        assert.equal(textOf(fa, fa.at(-1).id), textOf(fb, fb.at(-1).id),
            'both connections receive the same reply text');
        assert.equal(fa.at(-1).fragmentId, fb.at(-1).fragmentId,
            'both connections see the same final fragment');
        a.dispose();
        b.dispose();
        await Promise.all([json.stop(), msgpack.stop()]);
    });

test('PUT adds a turn to a conversation and its reply streams live', async () => {
    const token = await devToken('chat-second-turn');
    const connection = await connect(stack, { protocol: 'json', token });
    const id = await createChat(stack, token, 'First question');
    const stream = new FragmentStream(connection, id);
    const first = await stream.waitFor(replyFinished, 'the first reply');
    const seen = first.length;

    const response = await api(stack, 'PUT', `/api/v1/chats/${id}`, {
        token, body: { id, prompt: { text: 'Second question' } },
    });
    assert.ok(response.status >= 200 && response.status < 300,
        `PUT /api/v1/chats/{id} succeeds (got ${response.status}: ${response.text})`);

    const fragments = await stream.waitFor(
        (fs) => fs.length > seen + 1 && fs.at(-1).isFinal && fs.at(-1).id !== fs[seen].id,
        'the second turn and its reply');
    const turn = fragments[seen];
    assert.equal(turn.text, 'Second question', 'the open stream receives the new user turn');
    assertIncreasingFragmentIds(fragments);

    const conversation = await getChat(stack, token, id);
    assert.deepEqual(conversation.messages.map((m) => m.role),
        ['user', 'assistant', 'user', 'assistant'], 'the conversation holds both turns');
    assert.equal(conversation.messages[3].text, textOf(fragments, fragments.at(-1).id),
        'the second streamed reply equals the stored one');
    stream.dispose();
    await connection.stop();
});

test('streaming an unknown conversation or a malformed id fails that stream only',
    async () => {
        const token = await devToken('chat-unknown');
        const connection = await connect(stack, { protocol: 'json', token });

        const unknown = new FragmentStream(connection, '0190a000-0000-7000-8000-000000000000');
        const error = await unknown.waitForError();
        assert.match(error.message, /\S/, 'the hub error says something');
        const malformed = new FragmentStream(connection, 'not-a-conversation-id');
        await malformed.waitForError();

        const id = await createChat(stack, token, 'Still there?');
        await new FragmentStream(connection, id).waitFor(replyFinished,
            'a reply on the connection that saw the errors');
        assert.equal(connection.state, 'Connected', 'the connection stayed open');
        await connection.stop();
    });

test('a client built withStatefulReconnect() connects and streams', async () => {
    const token = await devToken('chat-stateful');
    const negotiate = (query) => api(stack, 'POST',
        `/api/v1/chats/stream/negotiate?negotiateVersion=1${query}`, { token });
    assert.equal((await negotiate('&useStatefulReconnect=true')).json?.useStatefulReconnect,
        true, 'negotiate grants stateful reconnect to a client that asks');
    assert.notEqual((await negotiate('')).json?.useStatefulReconnect, true,
        'negotiate does not offer it to a client that did not ask');

    const connection = await connect(stack, { protocol: 'messagepack', token,
        statefulReconnect: true });
    const prompt = 'Stateful, please.';
    const id = await createChat(stack, token, prompt);
    const stream = new FragmentStream(connection, id);
    const fragments = await stream.waitFor(replyFinished, 'the end of the reply');
    assert.equal(fragments[0].text, prompt, 'the stream starts with the prompt');
    const [stored] = messagesOf(await getChat(stack, token, id), 'assistant');
    assert.equal(textOf(fragments, stored.id), stored.text, 'the reply arrives in full');
    stream.dispose();
    await connection.stop();
});

test('REST rejects a prompt without text with a problem body', async () => {
    const token = await devToken('chat-bad-prompt');
    for (const body of [{}, { prompt: {} }, { prompt: { text: '' } }, 'not json']) {
        const response = await api(stack, 'POST', '/api/v1/chats', { token, body });
        assert.equal(response.status, 400,
            `POST ${JSON.stringify(body)} answers 400 (got ${response.status})`);
        assert.equal(response.json?.status, 400, 'the 400 carries a JSON problem body');
    }
});

test('the stack stops cleanly: every process exits 0, no sanitizer report', async () => {
    const result = await stack.stop();
    assert.deepEqual(result, { code: 0, signal: null },
        `run-stack exits 0 after TERM\n${stack.logTail()}`);
    assert.doesNotMatch(stack.logTail(2000), /AddressSanitizer|LeakSanitizer|runtime error:/,
        'no sanitizer reported anything');
});
