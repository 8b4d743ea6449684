// Stateful reconnect on one instance: the official client built with
// withStatefulReconnect() goes through a proxy that cuts its TCP
// connections, and the application never notices. Every fragment of a
// streamed reply arrives once and in order, with no error, no automatic
// reconnect and no new Stream call. What the client sends while it is
// away arrives once. The client may come back to either worker, and may
// notice a cut before nginx does. An nginx reload in the middle of a
// reply leaves no gap and no duplicate. Another user cannot take a
// parked connection, and a client at fault is not resumed.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { startCutProxy, statefulStackConf } from './lib/cut-proxy.mjs';
import { assertIncreasingFragmentIds } from './lib/fragments.mjs';
import {
    FragmentStream, HUB_PATH, PROTOCOLS, buildConnection, textOf,
} from './lib/hub.mjs';
import { upgrade } from './lib/rawws.mjs';
import { createChat, getChat, messagesOf } from './lib/rest.mjs';
import { startStack } from './lib/stack.mjs';
import { devToken } from './lib/tokens.mjs';

const REPLY_TOKENS = 120;
let stack;
let proxy;

before(async () => {
    stack = await startStack({
        nginxConf: await statefulStackConf(),
        env: {
            SIGNALRD_DEMO_TOKEN_RATE: '30',
            SIGNALRD_DEMO_REPLY_TOKENS: String(REPLY_TOKENS),
        },
    });
    proxy = await startCutProxy(stack.port);
});

after(async () => {
    await proxy?.close();
    await stack?.stop();
});

const assistantFinal = (fs) => fs.some((f) => f.isFinal && f.sender === 'assistant');

// A client as an application builds it: stateful reconnect, and the
// automatic reconnect behind it; it counts what the application would
// see of a reconnect.
function statefulClient(token, { protocol = 'json', direct = false } = {}) {
    const connection = buildConnection(direct ? stack : proxy, {
        token, protocol, statefulReconnect: true, reconnectDelays: [0, 200, 500, 1000],
    });
    const seen = { reconnecting: 0, closed: false };
    connection.onreconnecting(() => { seen.reconnecting++; });
    connection.onclose(() => { seen.closed = true; });
    return { connection, seen };
}

async function assertWholeReply(token, chatId, fragments, what) {
    const ids = fragments.map((f) => f.fragmentId);
    assert.equal(new Set(ids).size, ids.length, `${what}: no fragment arrives twice`);
    assertIncreasingFragmentIds(fragments, what);
    const [reply] = messagesOf(await getChat(stack, token, chatId), 'assistant');
    assert.equal(textOf(fragments, reply.id), reply.text,
        `${what}: the fragments make up the stored reply exactly`);
}

function assertUnnoticed(seen, stream, what) {
    assert.equal(stream.error, null, `${what}: the stream never failed`);
    assert.equal(seen.reconnecting, 0, `${what}: the automatic reconnect never ran`);
    assert.equal(seen.closed, false, `${what}: the connection never closed`);
}

// The worker of every WebSocket of a connection, from the access log,
// oldest first; an upgrade is logged once it is answered, which may be
// a moment after the client saw the 101: waits for at least `count`.
async function webSocketWorkers(connectionId, count = 0) {
    const deadline = Date.now() + 3000;
    for (;;) {
        const workers = (await stack.accessLog()).split('\n')
            .filter((line) => line.includes(`conn=${connectionId} `) && line.includes('"GET '))
            .map((line) => /pid=(\d+)/.exec(line)?.[1]);
        if (workers.length >= count || Date.now() > deadline) {
            return workers;
        }
        await sleep(100);
    }
}

for (const protocol of PROTOCOLS) {
    test(`${protocol}: two cuts during a streamed reply go unnoticed`, async (t) => {
        const token = await devToken(`rc-cut-${protocol}`);
        const { connection, seen } = statefulClient(token, { protocol });
        t.after(() => connection.stop());
        await connection.start();
        const connectionId = connection.connectionId;

        const id = await createChat(stack, token, 'Tell me a long story.');
        const stream = new FragmentStream(connection, id);
        await stream.waitFor((fs) => fs.length >= 10, 'ten fragments before the first cut');
        assert.ok(proxy.cut() >= 1, 'the first cut dropped the connection');

        const count = stream.fragments.length;
        await stream.waitFor((fs) => fs.length >= count + 10,
            'ten more fragments after the first cut');
        assert.ok(proxy.cut() >= 1, 'the second cut dropped the connection');

        const fragments = await stream.waitFor(assistantFinal, 'the end of the reply', 30000);
        assertUnnoticed(seen, stream, protocol);
        assert.equal(connection.connectionId, connectionId, 'the connection kept its id');
        await assertWholeReply(token, id, fragments, protocol);

        stream.dispose();
        await connection.stop();
        const sockets = await webSocketWorkers(connectionId, 3);
        assert.ok(sockets.length >= 3,
            `one connection, three WebSockets: the first and two after cuts (${sockets.length})`);
    });
}

test('the client notices a cut first: its connection moves to where it comes back',
    async (t) => {
        const token = await devToken('rc-first');
        const { connection, seen } = statefulClient(token);
        t.after(() => connection.stop());
        await connection.start();

        const id = await createChat(stack, token, 'Who noticed first?');
        const stream = new FragmentStream(connection, id);
        await stream.waitFor((fs) => fs.length >= 10, 'ten fragments before the cut');

        // nginx keeps its side of the sockets (the WebSocket, and the
        // negotiate's idle keep-alive one): only the client's return
        // tells it that the connection moved
        assert.ok(proxy.cut({ serverSide: false }) >= 1, 'the cut dropped the client side');
        const stale = proxy.staleCount;
        const fragments = await stream.waitFor(assistantFinal, 'the end of the reply', 30000);
        assertUnnoticed(seen, stream, 'client first');
        await assertWholeReply(token, id, fragments, 'client first');

        const deadline = Date.now() + 5000;
        while (proxy.staleCount >= stale && Date.now() < deadline) {
            await sleep(50);
        }
        assert.ok(proxy.staleCount < stale,
            'nginx closed the WebSocket the client had left, without being told');
        stream.dispose();
    });

test('what the client sends while it is away arrives once', async (t) => {
    const token = await devToken('rc-away');
    const { connection, seen } = statefulClient(token);
    t.after(() => {
        proxy.release();
        return connection.stop();
    });
    await connection.start();

    proxy.hold();
    proxy.cut();
    const deadline = Date.now() + 5000;
    while (proxy.waitingCount === 0 && Date.now() < deadline) {
        await sleep(20);
    }
    assert.ok(proxy.waitingCount >= 1, 'the client is away, trying to come back');

    // a Stream call made now waits in the client's buffer, and goes out
    // again after the reconnect together with what it had not acked
    const id = await createChat(stack, token, 'Answer me when you are back.');
    const stream = new FragmentStream(connection, id);
    await sleep(500);
    assert.equal(stream.fragments.length, 0, 'nothing arrives while the client is away');
    proxy.release();

    const fragments = await stream.waitFor(assistantFinal, 'the reply after the return', 30000);
    assertUnnoticed(seen, stream, 'away');
    await assertWholeReply(token, id, fragments, 'the stream asked for while away');
    stream.dispose();
});

test('the client comes back to another worker', async (t) => {
    const token = await devToken('rc-worker');
    const { connection, seen } = statefulClient(token);
    t.after(() => connection.stop());
    await connection.start();
    const connectionId = connection.connectionId;

    const id = await createChat(stack, token, 'Keep going whoever answers.');
    const stream = new FragmentStream(connection, id);

    // reuseport spreads the upgrades over both workers: cut until one
    // came back to another worker than the one before
    let workers = [];
    for (let cut = 0; cut < 12 && new Set(workers).size < 2; cut++) {
        const count = stream.fragments.length;
        await stream.waitFor((fs) => fs.length >= count + 3, `three fragments after cut ${cut}`);
        proxy.cut();
        await sleep(200);
        workers = (await webSocketWorkers(connectionId)).filter(Boolean);
    }
    assert.ok(new Set(workers).size >= 2,
        `the WebSockets of one connection met both workers (${workers})`);

    const fragments = await stream.waitFor(assistantFinal, 'the end of the reply', 30000);
    assertUnnoticed(seen, stream, 'across workers');
    await assertWholeReply(token, id, fragments, 'across workers');
    stream.dispose();
});

test('nginx -s reload during a stream: no gap, no duplicate', async (t) => {
    const token = await devToken('rc-reload');
    const { connection, seen } = statefulClient(token, { direct: true });
    t.after(() => connection.stop());
    await connection.start();

    const id = await createChat(stack, token, 'Keep talking through a deploy.');
    const stream = new FragmentStream(connection, id);
    await stream.waitFor((fs) => fs.length >= 10, 'ten fragments before the reload');

    process.kill(await stack.pidOf('nginx'), 'SIGHUP');

    const fragments = await stream.waitFor(assistantFinal, 'the end of the reply', 30000);
    assertUnnoticed(seen, stream, 'reload');
    await assertWholeReply(token, id, fragments, 'across the reload');
    stream.dispose();
});

test('another user cannot take a parked connection over', async (t) => {
    const token = await devToken('rc-owner');
    const { connection } = statefulClient(token);
    t.after(() => {
        proxy.release();
        return connection.stop();
    });
    await connection.start();
    const connectionId = connection.connectionId;

    proxy.hold();
    proxy.cut();

    // the connection token, as the access log shows the upgrade
    let connectionToken = null;
    const deadline = Date.now() + 3000;
    while (!connectionToken && Date.now() < deadline) {
        const line = (await stack.accessLog()).split('\n')
            .find((l) => l.includes(`conn=${connectionId} `) && l.includes('"GET '));
        connectionToken = line ? /[?&]id=([^ &]+)/.exec(line)?.[1] : null;
        await sleep(50);
    }
    assert.ok(connectionToken, 'the access log names the upgrade of the connection');

    const intruder = await devToken('rc-intruder');
    const ws = await upgrade(stack.port, `${HUB_PATH}?id=${connectionToken}`,
        { Authorization: `Bearer ${intruder}` });
    assert.equal(ws.status, 403, `another user's upgrade is refused (got ${ws.status})`);
});

test('a message over the size limit ends a stateful connection for good', async (t) => {
    const token = await devToken('rc-poison');
    const connection = buildConnection(proxy, { token, statefulReconnect: true });
    const closed = new Promise((resolve) => connection.onclose(resolve));
    t.after(() => connection.stop());
    await connection.start();
    const connectionId = connection.connectionId;

    // over the dev stack's signalr_max_message_size of 32k: resuming
    // would only bring the same message back
    connection.send('Stream', 'x'.repeat(40000), null).catch(() => {});
    const error = await Promise.race([closed,
        sleep(15000).then(() => { throw new Error('the connection did not end in 15 s'); })]);
    assert.ok(error, `the connection ended with an error (${error})`);

    await sleep(500);
    const upgrades = (await stack.accessLog()).split('\n')
        .filter((line) => line.includes(`conn=${connectionId} `) && line.includes('"GET '));
    assert.equal(upgrades.length, 1, 'the connection was not resumed after the fault');
});

test('the stack stops cleanly after all that', async () => {
    await proxy.close();
    proxy = null;
    await stack.stopCleanly();
    stack = null;
});
