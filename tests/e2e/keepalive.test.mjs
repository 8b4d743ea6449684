// Keep-alive and the client timeout, as ASP.NET Core's defaults have
// them: a server that has sent nothing for 15 s sends a Ping; a client
// that has sent nothing for 30 s gets a Close with an error.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { HUB_PATH } from './lib/hub.mjs';
import { OPCODE, upgrade } from './lib/rawws.mjs';
import { startStack } from './lib/stack.mjs';
import { devToken } from './lib/tokens.mjs';

const RECORD_SEPARATOR = '\u001e';
let stack;

before(async () => {
    stack = await startStack();
});

after(async () => {
    await stack?.stop();
});

// Every hub message the server sends until the socket closes, each with
// the seconds since the handshake it arrived at.
async function collectUntilClosed(raw, start, timeoutMs) {
    const received = [];
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const frame = await raw.nextFrame(Math.max(deadline - Date.now(), 1));
        const at = (Date.now() - start) / 1000;
        if (frame.opcode === OPCODE.close) {
            return { received, closeFrame: frame, closedAt: at };
        }
        for (const text of frame.payload.toString('utf8').split(RECORD_SEPARATOR)) {
            if (text !== '') {
                received.push({ at, message: JSON.parse(text) });
            }
        }
    }
}

// both wait for half a minute or more: they run side by side
describe('keep-alive and client timeout', { concurrency: true }, () => {
    test('an idle server pings every 15 s and a silent client is dropped after 30 s',
        async () => {
            const token = await devToken('keepalive');
            const ws = await upgrade(stack.port, HUB_PATH, { Authorization: `Bearer ${token}` });
            assert.equal(ws.status, 101, `the upgrade answers 101 (got ${ws.status})`);
            assert.deepEqual(await ws.raw.handshake('json'), {}, 'the handshake succeeds');
            const start = Date.now();

            const { received, closeFrame, closedAt } = await collectUntilClosed(ws.raw, start,
                45000);

            const pings = received.filter((r) => r.message.type === 6);
            assert.ok(pings.length >= 1, 'the server sent at least one Ping while idle');
            assert.ok(pings[0].at >= 14 && pings[0].at <= 20,
                `the first Ping comes after about 15 s of silence (at ${pings[0].at} s)`);

            const close = received.find((r) => r.message.type === 7);
            assert.ok(close, 'a Close message comes before the socket closes');
            assert.ok(close.at >= 29 && close.at <= 36,
                `the Close comes after about 30 s without a message (at ${close.at} s)`);
            assert.match(close.message.error ?? '', /timeout/i,
                'the Close carries an error that names the timeout');
            assert.ok(closedAt >= close.at, 'the WebSocket closes after the Close message');
            assert.notEqual(closeFrame.code, 1002, 'the close is not a protocol error');
        });

    test('a client that pings on time is kept past the client timeout', async () => {
        const token = await devToken('keepalive-pinger');
        const ws = await upgrade(stack.port, HUB_PATH, { Authorization: `Bearer ${token}` });
        assert.equal(ws.status, 101, `the upgrade answers 101 (got ${ws.status})`);
        assert.deepEqual(await ws.raw.handshake('json'), {}, 'the handshake succeeds');

        // what the official client does: a Ping every 15 s
        const pinger = setInterval(() => {
            ws.raw.sendText(JSON.stringify({ type: 6 }) + RECORD_SEPARATOR);
        }, 10000);
        try {
            const start = Date.now();
            const outcome = await collectUntilClosed(ws.raw, start, 36000).catch((err) => err);
            assert.ok(outcome instanceof Error && /timed out/.test(outcome.message),
                'the connection is still open after 36 s of pings only '
                + `(${outcome instanceof Error ? outcome.message : 'it closed'})`);
        } finally {
            clearInterval(pinger);
            ws.raw.close();
        }
    });
});
