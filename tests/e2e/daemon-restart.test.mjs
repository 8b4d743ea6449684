// Losing the daemon: kill -9 signalrd in the middle of a reply; run-stack
// (--restart-daemon) starts it again. Clients stay connected or are told
// to reconnect, their streams end with an error, and nothing Redis held
// is lost or sent twice.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { assertIncreasingFragmentIds } from './lib/fragments.mjs';
import { FragmentStream, NO_CONTEXT, connect, contextAfter, textOf } from './lib/hub.mjs';
import { createChat, getChat, messagesOf } from './lib/rest.mjs';
import { startStack } from './lib/stack.mjs';
import { devToken } from './lib/tokens.mjs';
import { waitFor } from './lib/wait.mjs';

let stack;

before(async () => {
    stack = await startStack({
        restartDaemon: true,
        env: { SIGNALRD_DEMO_TOKEN_RATE: '10', SIGNALRD_DEMO_REPLY_TOKENS: '40' },
    });
});

after(async () => {
    await stack?.stop();
});

// Collects a Stream until nothing new came for quietMs. The worker's link
// to the new daemon may still be coming up ("hub unavailable"): retry
// until the stream is accepted.
async function streamUntilQuiet(connection, id, context, quietMs = 1500) {
    const deadline = Date.now() + 20000;
    for (;;) {
        const stream = new FragmentStream(connection, id, context);
        let count = -1;
        while (count !== stream.fragments.length && !stream.error) {
            count = stream.fragments.length;
            await sleep(quietMs);
        }
        if (!stream.error) {
            stream.dispose();
            return stream.fragments;
        }
        if (Date.now() > deadline) {
            throw new Error(`Stream kept failing after the restart: ${stream.error.message}`);
        }
        await sleep(300);
    }
}

test('kill -9 of signalrd mid-reply: the stream fails, the client recovers, nothing is lost',
    async () => {
        const token = await devToken('restart-user');
        const connection = await connect(stack, {
            token, reconnectDelays: [0, 250, 500, 1000, 1000, 2000, 2000, 5000],
        });
        let closedForGood = null;
        connection.onclose((err) => { closedForGood = err ?? new Error('closed'); });

        const prompt = 'Survive a crash, please.';
        const id = await createChat(stack, token, prompt);
        const stream = new FragmentStream(connection, id);
        await stream.waitFor((fs) => fs.length >= 8, 'the turn and some reply fragments');

        const oldPid = await stack.pidOf('signalrd');
        process.kill(oldPid, 'SIGKILL');

        const error = await stream.waitForError(15000);
        assert.match(error.message, /\S/, 'the open stream ends with an error');
        const seen = [...stream.fragments];
        const last = seen.at(-1);

        await waitFor(async () => (await stack.pidOf('signalrd').catch(() => oldPid)) !== oldPid,
            'run-stack to start signalrd again');
        await stack.waitHealthy();
        await waitFor(() => connection.state === 'Connected' || closedForGood,
            'the client connection to be usable');
        assert.equal(closedForGood, null, 'the client connection was never closed for good');

        // resuming from the last fragment seen: only what came after it
        const resumed = await streamUntilQuiet(connection, id, contextAfter(last));
        const seenIds = new Set(seen.map((f) => f.fragmentId));
        assert.deepEqual(resumed.filter((f) => seenIds.has(f.fragmentId)), [],
            'no fragment seen before the crash is sent again');
        assertIncreasingFragmentIds([...seen, ...resumed], 'seen then resumed');

        // what the client saw before the crash was stored, not only sent
        const replayed = await streamUntilQuiet(connection, id, NO_CONTEXT);
        assert.equal(replayed[0].text, prompt, 'the conversation still starts with the prompt');
        const replyId = last.id;
        assert.ok(textOf(replayed, replyId).startsWith(textOf(seen, replyId)),
            'the stored reply holds at least everything streamed before the crash');
        const conversation = await getChat(stack, token, id);
        assert.deepEqual(messagesOf(conversation, 'user').map((m) => m.text), [prompt],
            'GET still returns the conversation after the restart');

        // and the restarted daemon serves new chats on the same connection
        const fresh = await createChat(stack, token, 'After the restart.');
        const next = new FragmentStream(connection, fresh);
        const fragments = await next.waitFor(
            (fs) => fs.length > 1 && fs.at(-1).isFinal && fs.at(-1).id !== fs[0].id,
            'a complete reply from the restarted daemon');
        const [reply] = messagesOf(await getChat(stack, token, fresh), 'assistant');
        assert.equal(textOf(fragments, reply.id), reply.text,
            'the new reply streams in full and matches what was stored');
        next.dispose();
        await connection.stop();
    });
