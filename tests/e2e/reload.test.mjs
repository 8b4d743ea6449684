// nginx reloading its configuration (a deploy): the workers that go away
// tell their clients to reconnect, and an application using the official
// client's automatic reconnect carries on, resuming its stream exactly.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { assertIncreasingFragmentIds } from './lib/fragments.mjs';
import {
    FragmentStream, HUB_PATH, buildConnection, contextAfter, textOf,
} from './lib/hub.mjs';
import { OPCODE, upgrade } from './lib/rawws.mjs';
import { createChat, getChat, messagesOf } from './lib/rest.mjs';
import { startStack } from './lib/stack.mjs';
import { devToken } from './lib/tokens.mjs';
import { waitFor } from './lib/wait.mjs';

const RECORD_SEPARATOR = '\u001e';
const REPLY_TOKENS = 60;
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

async function reloadNginx() {
    process.kill(await stack.pidOf('nginx'), 'SIGHUP');
}

function within(promise, ms, what) {
    return Promise.race([
        promise,
        sleep(ms).then(() => {
            throw new Error(`${what} did not happen within ${ms} ms`);
        }),
    ]);
}

// Reads hub messages off a raw socket until a Close message arrives;
// returns it with the WebSocket close frame that follows.
async function readUntilHubClose(raw) {
    const deadline = Date.now() + 10000;
    for (;;) {
        const frame = await raw.nextFrame(Math.max(deadline - Date.now(), 1));
        if (frame.opcode === OPCODE.close) {
            throw new Error(`the socket closed (${frame.code}) without a Close message`);
        }
        const messages = frame.payload.toString('utf8').split(RECORD_SEPARATOR)
            .filter((text) => text !== '')
            .map((text) => JSON.parse(text));
        const close = messages.find((message) => message.type === 7);
        if (close) {
            return { close, closeFrame: await raw.nextClose() };
        }
    }
}

test('a reload sends Close with allowReconnect before the old worker goes', async () => {
    const token = await devToken('reload-raw');
    const ws = await upgrade(stack.port, HUB_PATH, { Authorization: `Bearer ${token}` });
    assert.equal(ws.status, 101, `the upgrade answers 101 (got ${ws.status})`);
    assert.deepEqual(await ws.raw.handshake('json'), {}, 'the handshake succeeds');

    await reloadNginx();

    const { close, closeFrame } = await readUntilHubClose(ws.raw);
    assert.equal(close.allowReconnect, true, 'the Close message allows reconnecting');
    assert.equal(closeFrame.code, 1001, 'the WebSocket then closes as "going away"');
    assert.equal(await ws.raw.waitClosed(), true, 'and the TCP connection ends');
});

test('the official client reconnects by itself and resumes its stream exactly',
    async () => {
        const token = await devToken('reload-app');
        const connection = buildConnection(stack, {
            token, reconnectDelays: [0, 200, 500, 1000, 2000],
        });
        const reconnecting = new Promise((resolve) => connection.onreconnecting(resolve));
        const reconnected = new Promise((resolve) => connection.onreconnected(resolve));
        let closed = false;
        connection.onclose(() => { closed = true; });
        await connection.start();

        const id = await createChat(stack, token, 'Keep talking through a deploy');
        const first = new FragmentStream(connection, id);
        await first.waitFor((fs) => fs.length >= 5, 'five fragments before the reload');

        await reloadNginx();

        await within(reconnecting, 10000, 'the client starting to reconnect');
        await within(reconnected, 15000, 'the client reconnecting');
        assert.equal(closed, false, 'the connection never closed for good');
        assert.equal(connection.state, 'Connected', 'the connection is usable again');

        // what an application does on onreconnected: Stream again from
        // the last fragment it saw. A client that comes back at once may
        // land on the other old worker before nginx told it to go; that
        // one then sends it away too, and the application, reconnected
        // once more, streams again from where it was
        const seen = [...first.fragments];
        const after = [];
        for (let attempt = 1; ; attempt++) {
            const last = after.length ? after.at(-1) : seen.at(-1);
            const stream = new FragmentStream(connection, id, contextAfter(last));
            try {
                await stream.waitFor(
                    (fs) => fs.some((f) => f.sender === 'assistant' && f.isFinal),
                    'the end of the reply after the reload', 20000);
                after.push(...stream.fragments);
                break;
            } catch (err) {
                after.push(...stream.fragments);
                if (attempt === 3
                    || !/connection being closed|not in the 'Connected' State/
                        .test(err.message)) {
                    throw err;
                }
                await sleep(100);
                await waitFor(() => connection.state === 'Connected',
                    'the client reconnecting again', 15000);
            }
        }

        const seenIds = new Set(seen.map((f) => f.fragmentId));
        assert.deepEqual(after.filter((f) => seenIds.has(f.fragmentId)), [],
            'nothing seen before the reload comes again');
        const all = [...seen, ...after];
        assertIncreasingFragmentIds(all, 'before and after the reload');

        const [reply] = messagesOf(await getChat(stack, token, id), 'assistant');
        assert.equal(textOf(all, reply.id), reply.text,
            'the reply seen across the reload is the whole stored reply');

        await connection.stop();
    });
