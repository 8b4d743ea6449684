// Stateful reconnect past its bounds: a client that stays away longer
// than signalr_stateful_reconnect_window, or while more than
// signalr_stateful_reconnect_buffer bytes pile up for it, loses its
// connection; its one stateful attempt is refused, the automatic
// reconnect starts a new connection, and the application resumes the
// conversation through Stream's last ids with nothing missing.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { startCutProxy, statefulStackConf } from './lib/cut-proxy.mjs';
import { assertIncreasingFragmentIds } from './lib/fragments.mjs';
import { FragmentStream, buildConnection, contextAfter, textOf } from './lib/hub.mjs';
import { createChat, getChat, messagesOf } from './lib/rest.mjs';
import { startStack } from './lib/stack.mjs';
import { devToken } from './lib/tokens.mjs';

// about 2 KB of fragments a second: well inside the buffer while the
// client acks every second, over it after a few seconds away
const ENV = { SIGNALRD_DEMO_TOKEN_RATE: '15', SIGNALRD_DEMO_REPLY_TOKENS: '120' };
const BUFFER_BYTES = 6000;
const WINDOW = '1s';

const bounded = {};

before(async () => {
    const [small, short] = await Promise.all([
        statefulStackConf({ buffer: BUFFER_BYTES }),
        statefulStackConf({ window: WINDOW }),
    ]);
    const [bufferStack, windowStack] = await Promise.all([
        startStack({ nginxConf: small, env: ENV }),
        startStack({ nginxConf: short, env: ENV }),
    ]);
    bounded.buffer = { stack: bufferStack, proxy: await startCutProxy(bufferStack.port) };
    bounded.window = { stack: windowStack, proxy: await startCutProxy(windowStack.port) };
});

after(async () => {
    for (const { stack, proxy } of Object.values(bounded)) {
        await proxy?.close();
        await stack?.stop();
    }
});

const assistantFinal = (fs) => fs.some((f) => f.isFinal && f.sender === 'assistant');

// What an application does: on every onreconnected, Stream again from
// the last fragment it saw. Resolves once the reply is over, with the
// first connection's id and the number of Stream calls.
async function followThroughReconnects(stack, proxy, token, away) {
    const connection = buildConnection(proxy, {
        token, statefulReconnect: true, reconnectDelays: [0, 200, 500, 1000, 2000],
    });
    let reconnecting = 0;
    connection.onreconnecting(() => { reconnecting++; });
    await connection.start();
    const firstId = connection.connectionId;

    const id = await createChat(stack, token, 'A long answer, please.');
    const streams = [new FragmentStream(connection, id)];
    const everything = () => streams.flatMap((s) => s.fragments);
    connection.onreconnected(() => {
        streams.push(new FragmentStream(connection, id, contextAfter(everything().at(-1))));
    });

    await streams[0].waitFor((fs) => fs.length >= 10, 'ten fragments before going away');
    proxy.hold();
    proxy.cut();
    await sleep(away);
    proxy.release();

    const deadline = Date.now() + 30000;
    while (!assistantFinal(everything())) {
        assert.ok(Date.now() < deadline,
            `the reply ends within 30 s of the return (${everything().length} fragments, `
            + `${streams.length} Stream calls, client: ${connection.clientLog.lines.slice(-3)})`);
        await sleep(100);
    }

    const fragments = everything();
    const ids = fragments.map((f) => f.fragmentId);
    assert.equal(new Set(ids).size, ids.length, 'no fragment arrives twice');
    assertIncreasingFragmentIds(fragments, 'across the reconnects');
    const [reply] = messagesOf(await getChat(stack, token, id), 'assistant');
    assert.equal(textOf(fragments, reply.id), reply.text,
        'the fragments of every stream make up the stored reply');

    assert.ok(reconnecting >= 1, 'the automatic reconnect ran');
    assert.notEqual(streams[0].error, null, 'the first stream ended with its connection');
    assert.notEqual(connection.connectionId, firstId, 'the reconnect made a new connection');
    const result = { firstId, streams: streams.length };
    streams.forEach((s) => s.dispose());
    await connection.stop();
    return result;
}


test('away while more than the buffer piles up: a new connection resumes the reply',
    async () => {
        const { stack, proxy } = bounded.buffer;
        const token = await devToken('rc-bound-buffer');
        const { firstId, streams } = await followThroughReconnects(stack, proxy, token, 4000);
        // a resumed Stream sends what was missed at once: with a buffer
        // this small that burst may end the new connection too, and the
        // application simply resumes again
        assert.ok(streams >= 2, `one Stream call before, more after (${streams})`);
        assert.match(stack.logTail(2000),
            new RegExp(`connection ${firstId}: \\d+ bytes held while parked, over its bound`),
            'the daemon ended the parked connection for its buffer bound');
    });

test('away for longer than the window: a new connection resumes the reply', async () => {
    const { stack, proxy } = bounded.window;
    const token = await devToken('rc-bound-window');
    const { firstId, streams } = await followThroughReconnects(stack, proxy, token, 2500);
    assert.ok(streams >= 2, `one Stream call before, more after (${streams})`);
    assert.match(stack.logTail(2000),
        new RegExp(`connection ${firstId}: reconnect window of 1000 ms passed`),
        'the daemon ended the parked connection when its window passed');
});

test('both stacks stop cleanly', async () => {
    for (const [name, entry] of Object.entries(bounded)) {
        await entry.proxy.close();
        entry.proxy = null;
        await entry.stack.stopCleanly(`the ${name} stack`);
        entry.stack = null;
    }
});
