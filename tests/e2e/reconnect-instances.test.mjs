// Stateful reconnect across instances: two stacks share one Redis, as
// two hosts behind a load balancer do. A client cut off from instance A
// comes back through the balancer to instance B, then to A again, and
// its application sees one unbroken stream.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { startCutProxy } from './lib/cut-proxy.mjs';
import { startDeployment } from './lib/deployment.mjs';
import { assertIncreasingFragmentIds } from './lib/fragments.mjs';
import { FragmentStream, buildConnection, textOf } from './lib/hub.mjs';
import { createChat, getChat, messagesOf } from './lib/rest.mjs';
import { devToken } from './lib/tokens.mjs';

let deployment;
let A;
let B;
let balancer;

before(async () => {
    deployment = await startDeployment({
        env: { SIGNALRD_DEMO_TOKEN_RATE: '30', SIGNALRD_DEMO_REPLY_TOKENS: '150' },
    });
    [A, B] = deployment.stacks;
    balancer = await startCutProxy(A.port);
});

after(async () => {
    await balancer?.close();
    await deployment?.stop();
});

const assistantFinal = (fs) => fs.some((f) => f.isFinal && f.sender === 'assistant');

// WebSocket upgrades of a connection in the access log, which has one
// once the upgrade was answered: waits a moment for at least `atLeast`.
async function webSocketsOn(stack, connectionId, atLeast) {
    const deadline = Date.now() + 3000;
    for (;;) {
        const count = (await stack.accessLog()).split('\n')
            .filter((line) => line.includes(`conn=${connectionId} `) && line.includes('"GET '))
            .length;
        if (count >= atLeast || Date.now() > deadline) {
            return count;
        }
        await sleep(100);
    }
}

test('cut on A, back on B, cut again, back on A: one unbroken stream', async () => {
    const token = await devToken('rc-instances');
    const connection = buildConnection(balancer, {
        token, statefulReconnect: true, reconnectDelays: [0, 200, 500, 1000],
    });
    let reconnecting = 0;
    connection.onreconnecting(() => { reconnecting++; });
    await connection.start();
    const connectionId = connection.connectionId;

    const id = await createChat(A, token, 'Wherever I come back, keep going.');
    const stream = new FragmentStream(connection, id);
    await stream.waitFor((fs) => fs.length >= 10, 'ten fragments from A');

    balancer.target = B.port;
    assert.ok(balancer.cut() >= 1, 'the cut dropped the connection to A');
    const onB = stream.fragments.length;
    await stream.waitFor((fs) => fs.length >= onB + 15, 'fifteen more fragments through B',
        20000);

    balancer.target = A.port;
    assert.ok(balancer.cut() >= 1, 'the cut dropped the connection to B');

    const fragments = await stream.waitFor(assistantFinal, 'the end of the reply', 30000);
    assert.equal(stream.error, null, 'the stream never failed');
    assert.equal(reconnecting, 0, 'the automatic reconnect never ran');
    assert.equal(connection.connectionId, connectionId, 'the connection kept its id');

    const ids = fragments.map((f) => f.fragmentId);
    assert.equal(new Set(ids).size, ids.length, 'no fragment arrives twice');
    assertIncreasingFragmentIds(fragments, 'across both instances');
    const [reply] = messagesOf(await getChat(B, token, id), 'assistant');
    assert.equal(textOf(fragments, reply.id), reply.text,
        'the fragments make up the stored reply exactly');

    stream.dispose();
    await connection.stop();
    assert.ok(await webSocketsOn(B, connectionId, 1) >= 1,
        'the connection had a WebSocket on instance B');
    assert.ok(await webSocketsOn(A, connectionId, 2) >= 2,
        'and two on instance A, before and after');
});

test('both instances stop cleanly', async () => {
    await balancer.close();
    balancer = null;
    for (const [name, stack] of [['A', A], ['B', B]]) {
        await stack.stopCleanly(`instance ${name}`);
    }
});
