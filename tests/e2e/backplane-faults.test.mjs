// The Redis backplane when Redis misbehaves: two full stacks share one
// redis-server (with its append-only file, so a restart keeps the data).
// Restarting it twice in the middle of a reply loses nothing and repeats
// nothing on either instance; while it is away the generating daemon
// holds fragments back in a bounded queue and makes the model wait at the
// bound; a daemon that starts while Redis is down reports not ready,
// refuses streams with a clear error, and serves once Redis is there.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { healthOf } from './lib/admin.mjs';
import { startDeployment } from './lib/deployment.mjs';
import { assertIncreasingFragmentIds } from './lib/fragments.mjs';
import { FragmentStream, connect, textOf } from './lib/hub.mjs';
import { api, createChat, getChat, messagesOf } from './lib/rest.mjs';
import { startRedis } from './lib/redis.mjs';
import { startStack } from './lib/stack.mjs';
import { devToken } from './lib/tokens.mjs';

const REPLY_TOKENS = 100;
const HOLD_BACK = 8;
let deployment;
let A;
let B;

before(async () => {
    deployment = await startDeployment({
        env: {
            SIGNALRD_DEMO_TOKEN_RATE: '20',
            SIGNALRD_DEMO_REPLY_TOKENS: String(REPLY_TOKENS),
            SIGNALRD_HOLD_BACK_FRAGMENTS: String(HOLD_BACK),
        },
    });
    [A, B] = deployment.stacks;
});

after(async () => {
    await deployment?.stop();
});

const assistantFinal = (fs) => fs.some((f) => f.isFinal && f.sender === 'assistant');
const replyFragments = (fs) => fs.filter((f) => f.sender === 'assistant');

// Polls A's health while fn runs; returns the largest heldBack seen and
// whether the health check said not ready.
async function watchHealth(stack, fn) {
    let maxHeld = 0;
    let sawNotReady = false;
    let running = true;
    const poll = (async () => {
        while (running) {
            const { status, json } = await healthOf(stack);
            if (status === 503 && json?.redis === 'down') {
                sawNotReady = true;
            }
            maxHeld = Math.max(maxHeld, json?.heldBack ?? 0);
            await sleep(50);
        }
    })();
    try {
        await fn();
    } finally {
        running = false;
        await poll;
    }
    return { maxHeld, sawNotReady };
}

test('restarting redis-server twice during a long reply: every client gets every fragment once',
    async () => {
        const token = await devToken('bp-redis-restart');
        const onA = await connect(A, { token });
        const onB = await connect(B, { token });
        const id = await createChat(A, token, 'A long answer, please.');
        const streamA = new FragmentStream(onA, id);
        const streamB = new FragmentStream(onB, id);

        const health = await watchHealth(A, async () => {
            for (const mark of [10, 35]) {
                await streamB.waitFor((fs) => replyFragments(fs).length >= mark,
                    `${mark} reply fragments on B`);
                // down long enough for the model to fill the hold-back queue
                await deployment.redis.restart(1000);
            }
            await Promise.all([
                streamA.waitFor(assistantFinal, 'the end of the reply on A', 40000),
                streamB.waitFor(assistantFinal, 'the end of the reply on B', 40000),
            ]);
        });

        const [reply] = messagesOf(await getChat(A, token, id), 'assistant');
        assert.equal(reply.text.split(' ').length, REPLY_TOKENS,
            `the stored reply has all ${REPLY_TOKENS} tokens: none lost, none doubled`);
        assert.doesNotMatch(reply.text, /Generation was|could not be completed/,
            'the reply ended normally, not with an error');
        for (const [name, stream] of [['A', streamA], ['B', streamB]]) {
            const ids = stream.fragments.map((f) => f.fragmentId);
            assert.equal(new Set(ids).size, ids.length, `${name}: no fragment arrives twice`);
            assertIncreasingFragmentIds(stream.fragments, `the stream on ${name}`);
            assert.equal(textOf(stream.fragments, reply.id), reply.text,
                `${name}: the fragments add up to the stored reply`);
            assert.equal(stream.error, null, `${name}: the stream never failed`);
        }
        assert.ok(health.sawNotReady, 'the health check said not ready while Redis was away');
        assert.ok(health.maxHeld > 0 && health.maxHeld <= HOLD_BACK,
            `fragments were held back, at most the bound ${HOLD_BACK} (saw ${health.maxHeld})`);
        assert.equal((await healthOf(A)).status, 200, 'A is ready again, without a restart');
        assert.equal((await healthOf(B)).status, 200, 'B is ready again, without a restart');

        // and both keep working: a new chat created on B streams on A
        const next = await createChat(B, token, 'After the restarts.');
        const again = new FragmentStream(onA, next);
        await again.waitFor(assistantFinal, 'a whole new reply', 20000);
        for (const s of [streamA, streamB, again]) {
            s.dispose();
        }
        await Promise.all([onA.stop(), onB.stop()]);
    });

test('redis down at startup: not ready, a clear error on the hub, then serving once it is up',
    async () => {
        const redis = await startRedis({ start: false });
        const stack = await startStack({ redisUrl: redis.url, waitHealthy: false });
        try {
            const { status, json } = await healthOf(stack);
            assert.equal(status, 503, 'the health check answers 503 while Redis is down');
            assert.equal(json?.redis, 'down', 'and names Redis as down');

            const token = await devToken('bp-late-redis');
            const connection = await connect(stack, { token });
            const stream = new FragmentStream(connection, '01890a5d-ac96-774b-bcce-b302099a8057');
            const error = await stream.waitForError();
            assert.match(error.message, /unavailable/i,
                `a stream gets a clear error meanwhile (${error.message})`);
            const created = await api(stack, 'POST', '/api/v1/chats', {
                token, body: { prompt: { text: 'too early' } },
            });
            assert.equal(created.status, 503, 'the REST API answers 503 meanwhile');

            await redis.start();
            await stack.waitHealthy(15000);
            const id = await createChat(stack, token, 'Now it works.');
            const live = new FragmentStream(connection, id);
            await live.waitFor(assistantFinal, 'a whole reply once Redis is up', 20000);
            live.dispose();
            await connection.stop();
        } finally {
            await stack.stop();
            await redis.destroy();
        }
    });
