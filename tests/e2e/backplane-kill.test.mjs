// The Redis backplane when the daemon generating a reply dies (kill -9):
// clients following the conversation on the other instance still see the
// reply end, with a final fragment published by whoever notices first:
// the restarted daemon (it knows the leases its previous run left), or,
// when the host stays down, another instance once the lease ran out.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { healthOf } from './lib/admin.mjs';
import { startDeployment } from './lib/deployment.mjs';
import { assertIncreasingFragmentIds } from './lib/fragments.mjs';
import { FragmentStream, connect, textOf } from './lib/hub.mjs';
import { createChat, getChat, messagesOf } from './lib/rest.mjs';
import { startStack } from './lib/stack.mjs';
import { devToken } from './lib/tokens.mjs';
import { waitFor } from './lib/wait.mjs';

const INTERRUPTED = 'Generation was interrupted.';
let deployment;
let A;
let B;

before(async () => {
    deployment = await startDeployment({
        env: { SIGNALRD_DEMO_TOKEN_RATE: '10', SIGNALRD_DEMO_REPLY_TOKENS: '200' },
        stacks: [{ restartDaemon: true }, {}],
    });
    [A, B] = deployment.stacks;
});

after(async () => {
    await deployment?.stop();
});

const assistantFinal = (fs) => fs.some((f) => f.isFinal && f.sender === 'assistant');

// The stream on the surviving instance ends the reply with the
// interrupted fragment, and what it saw is what was stored.
async function assertEndedOnB(token, id, stream, timeoutMs) {
    const fragments = await stream.waitFor(assistantFinal, 'a final fragment on B', timeoutMs);
    const final = fragments.at(-1);
    assert.equal(final.text, INTERRUPTED, 'the reply ends with the interrupted fragment');
    assertIncreasingFragmentIds(fragments, 'the stream on B');
    const [reply] = messagesOf(await getChat(B, token, id), 'assistant');
    assert.equal(textOf(fragments, reply.id), reply.text,
        'B saw exactly the stored reply, its end included');
    assert.ok(reply.text.endsWith(INTERRUPTED), 'the stored reply ends as interrupted');
}

test('kill -9 of the generating daemon: its restart ends the reply, then new chats work',
    async () => {
        const token = await devToken('bp-kill-restart');
        const onB = await connect(B, { token });
        const id = await createChat(A, token, 'Generate on A, die on A.');
        const stream = new FragmentStream(onB, id);
        await stream.waitFor((fs) => fs.length >= 6, 'some of the reply on B');

        const oldPid = await A.pidOf('signalrd');
        process.kill(oldPid, 'SIGKILL');
        const killedAt = Date.now();
        await assertEndedOnB(token, id, stream, 15000);
        assert.ok(Date.now() - killedAt < 10000,
            'the restarted daemon ended it without waiting for the lease to run out');
        assert.equal(stream.error, null, 'the stream on B never failed');

        await waitFor(async () => (await A.pidOf('signalrd').catch(() => oldPid)) !== oldPid,
            'run-stack to start signalrd again');
        await A.waitHealthy();
        // the daemon answers /healthz before nginx's workers have linked to it
        // again, and a hub call meanwhile is answered "hub unavailable"
        await waitFor(async () => (await healthOf(A)).json?.links >= 2,
            'both nginx workers to link to the restarted daemon');
        const onA = await connect(A, { token });
        const fresh = await createChat(A, token, 'After the restart.');
        const next = new FragmentStream(onA, fresh);
        const onBToo = new FragmentStream(onB, fresh);
        const fragments = await next.waitFor(assistantFinal, 'a whole new reply on A', 30000);
        await onBToo.waitFor(assistantFinal, 'the same reply on B', 5000);
        const [reply] = messagesOf(await getChat(A, token, fresh), 'assistant');
        assert.equal(textOf(fragments, reply.id), reply.text, 'the new reply streams in full');
        assert.equal(textOf(onBToo.fragments, reply.id), reply.text, 'on B as well');
        for (const s of [stream, next, onBToo]) {
            s.dispose();
        }
        await Promise.all([onA.stop(), onB.stop()]);
    });

test('kill -9 of a daemon whose host stays down: another instance ends the reply', async () => {
    const C = await startStack({
        redisUrl: deployment.redis.url,
        env: { SIGNALRD_DEMO_TOKEN_RATE: '10', SIGNALRD_DEMO_REPLY_TOKENS: '400' },
    });
    const token = await devToken('bp-kill-gone');
    const onB = await connect(B, { token });
    const id = await createChat(C, token, 'Generate on C, and C is gone.');
    const stream = new FragmentStream(onB, id);
    await stream.waitFor((fs) => fs.length >= 6, 'some of the reply on B');

    // without --restart-daemon the whole stack goes down with its daemon
    process.kill(await C.pidOf('signalrd'), 'SIGKILL');
    const killedAt = Date.now();
    await C.exited;
    await assertEndedOnB(token, id, stream, 30000);
    const waited = Date.now() - killedAt;
    assert.ok(waited >= 5000, `B waited for the dead instance's lease (${waited} ms)`);
    stream.dispose();
    await onB.stop();
    await C.stop();
});
