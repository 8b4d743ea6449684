// The Redis backplane, delivery side: two full stacks (A and B) share one
// redis-server. A reply generated on A streams live to clients on both;
// a cancel on B stops it on A; hub messages for a user, a group, a
// connection or everyone reach each matching connection once, wherever
// it is; a second deployment with its own key prefix sees none of it.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { startDeployment } from './lib/deployment.mjs';
import { assertIncreasingFragmentIds } from './lib/fragments.mjs';
import { FragmentStream, connect, textOf } from './lib/hub.mjs';
import { hubRoute, push } from './lib/push.mjs';
import { api, cancelChat, createChat, getChat, messagesOf } from './lib/rest.mjs';
import { startStack } from './lib/stack.mjs';
import { devToken } from './lib/tokens.mjs';

const REPLY_TOKENS = 40;
let deployment;
let A;
let B;

before(async () => {
    deployment = await startDeployment({
        env: { SIGNALRD_DEMO_TOKEN_RATE: '20', SIGNALRD_DEMO_REPLY_TOKENS: String(REPLY_TOKENS) },
    });
    [A, B] = deployment.stacks;
});

after(async () => {
    await deployment?.stop();
});

const assistantFinal = (fs) => fs.some((f) => f.isFinal && f.sender === 'assistant');

function assertOnce(fragments, what) {
    const ids = fragments.map((f) => f.fragmentId);
    assert.equal(new Set(ids).size, ids.length, `${what}: no fragment arrives twice`);
    assertIncreasingFragmentIds(fragments, what);
}

test('create on A, stream from A and from B at once: both get the whole reply, live',
    async () => {
        const token = await devToken('bp-both');
        const onA = await connect(A, { token });
        const onB = await connect(B, { token, protocol: 'messagepack' });
        const id = await createChat(A, token, 'Tell both instances.');
        const streamA = new FragmentStream(onA, id);
        const streamB = new FragmentStream(onB, id);

        await Promise.all([streamA.waitFor(assistantFinal, 'the end of the reply on A'),
            streamB.waitFor(assistantFinal, 'the end of the reply on B')]);
        const [reply] = messagesOf(await getChat(B, token, id), 'assistant');
        for (const [name, stream] of [['A', streamA], ['B', streamB]]) {
            assertOnce(stream.fragments, `the stream on ${name}`);
            assert.equal(textOf(stream.fragments, reply.id), reply.text,
                `the stream on ${name} carries the stored reply exactly`);
        }
        const live = streamB.fragments.filter((f) => f.id === reply.id && !f.isFinal);
        assert.ok(live.length >= REPLY_TOKENS / 2,
            `B, which does not generate the reply, got it fragment by fragment (${live.length})`);
        assert.deepEqual(streamB.fragments.map((f) => f.fragmentId),
            streamA.fragments.map((f) => f.fragmentId), 'both instances sent the same fragments');

        streamA.dispose();
        streamB.dispose();
        await Promise.all([onA.stop(), onB.stop()]);
    });

test('cancel on B for a reply generated on A: it stops on A within 100 ms', async () => {
    const token = await devToken('bp-cancel');
    const onA = await connect(A, { token });
    const onB = await connect(B, { token });
    const id = await createChat(A, token, 'Cancel me from elsewhere.');
    const streamA = new FragmentStream(onA, id);
    const streamB = new FragmentStream(onB, id);
    await streamB.waitFor((fs) => fs.filter((f) => f.sender === 'assistant').length >= 3,
        'three reply fragments on B');

    let finalAt = 0;
    const finalOnA = streamA.waitFor(assistantFinal, 'the cancelled final on A')
        .then((fs) => { finalAt = performance.now(); return fs; });
    const sentAt = performance.now();
    const response = await cancelChat(B, token, id);
    assert.equal(response.status, 204, `DELETE .../cancel on B answers 204 (${response.text})`);
    await finalOnA;
    const elapsed = finalAt - sentAt;
    await streamB.waitFor(assistantFinal, 'the cancelled final on B');

    for (const stream of [streamA, streamB]) {
        assert.equal(stream.fragments.at(-1).text, 'Generation was cancelled.',
            'the reply ends with the cancelled fragment');
    }
    assert.ok(elapsed < 100, `from the cancel request on B to the reply's end on A: `
        + `${elapsed.toFixed(1)} ms (at most 100)`);
    const [reply] = messagesOf(await getChat(A, token, id), 'assistant');
    assert.ok(reply.text.endsWith('Generation was cancelled.'), 'the stored reply says cancelled');
    assert.ok(reply.text.split(' ').length < REPLY_TOKENS, 'the model stopped before its end');
    assert.equal(textOf(streamB.fragments, reply.id), reply.text, 'B saw the stored reply');

    streamA.dispose();
    streamB.dispose();
    await Promise.all([onA.stop(), onB.stop()]);
});

// Records every Notice a connection receives.
function listen(connection) {
    const got = [];
    connection.on('Notice', (...args) => got.push(args));
    return got;
}

// through the push API (docs/push-api.md), which publishes on the backplane
async function send(stack, route, args) {
    const response = await push(stack, 'POST', hubRoute('ChatStreamHub', `${route}/:send`),
        { body: { target: 'Notice', arguments: args } });
    assert.equal(response.status, 202, `POST ${route} answers 202 (${response.text})`);
    return response.json;
}

test('messages to a user, a group, a connection and everyone reach each connection once',
    async () => {
        const token = await devToken('bp-notify');
        const other = await devToken('bp-bystander');
        const conns = {
            a1: await connect(A, { token }),
            b1: await connect(B, { token }),
            b2: await connect(B, { token, protocol: 'messagepack' }),
            x: await connect(A, { token: other }),
        };
        const got = Object.fromEntries(Object.entries(conns).map(([k, c]) => [k, listen(c)]));
        const counts = (tag) => Object.fromEntries(Object.entries(got)
            .map(([k, list]) => [k, list.filter((args) => args[0] === tag).length]));
        // hub subscriptions are made as connections open: give them a moment
        await sleep(300);

        const toUser = await send(A, '/users/bp-notify', ['user', { n: 1 }]);
        assert.equal(toUser.instances, 2, 'both instances hold a connection of the user');
        await sleep(500);
        assert.deepEqual(counts('user'), { a1: 1, b1: 1, b2: 1, x: 0 },
            'each connection of the user gets the message once, the bystander none');
        assert.deepEqual(got.b2.find((args) => args[0] === 'user'), ['user', { n: 1 }],
            'the arguments arrive as sent (MessagePack connection)');

        await send(B, '', ['everyone']);
        for (const [name, conn] of [['a1', conns.a1], ['b2', conns.b2]]) {
            const joined = await push(B, 'PUT', hubRoute('ChatStreamHub',
                `/groups/readers/connections/${conn.connectionId}`));
            assert.equal(joined.status, 200, `${name} joins the group from B (${joined.text})`);
        }
        await sleep(300);
        await send(A, '/groups/readers', ['group']);
        await send(B, `/connections/${conns.x.connectionId}`, ['direct']);
        await sleep(500);
        assert.deepEqual(counts('everyone'), { a1: 1, b1: 1, b2: 1, x: 1 },
            'a message to everyone reaches every connection once');
        assert.deepEqual(counts('group'), { a1: 1, b1: 0, b2: 1, x: 0 },
            'a group message reaches its members on both instances once');
        assert.deepEqual(counts('direct'), { a1: 0, b1: 0, b2: 0, x: 1 },
            'a message to one connection, sent through the other instance, reaches it once');

        const unknown = await push(A, 'PUT',
            hubRoute('ChatStreamHub', '/groups/readers/connections/no-such-connection'));
        assert.equal(unknown.status, 404, 'joining a connection nobody holds is a 404');
        const bad = await push(A, 'POST', hubRoute('ChatStreamHub', '/:send'),
            { body: { target: '' } });
        assert.equal(bad.status, 400, 'a message without a target is a 400');
        await Promise.all(Object.values(conns).map((c) => c.stop()));
    });

test('another deployment with its own key prefix on the same Redis sees nothing', async () => {
    const token = await devToken('bp-prefix');
    const id = await createChat(A, token, 'Private to this deployment.');
    const elsewhere = await startStack({
        redisUrl: deployment.redis.url, env: { SIGNALRD_KEY_PREFIX: 'other-deployment' },
    });
    try {
        const seen = await api(elsewhere, 'GET', `/api/v1/chats/${id}`, { token });
        assert.equal(seen.status, 404, 'the other prefix does not see the conversation');
        const listed = await api(elsewhere, 'GET', '/api/v1/chats', { token });
        assert.deepEqual(listed.json, [], 'nor lists it');
        const connection = await connect(elsewhere, { token });
        const stream = new FragmentStream(connection, id);
        const error = await stream.waitForError();
        assert.match(error.message, /not found/i, 'streaming it there fails: not found');
        await connection.stop();
    } finally {
        await elsewhere.stop();
    }
});
