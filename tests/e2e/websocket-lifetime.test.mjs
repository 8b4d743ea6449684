// A WebSocket outlives its upgrade request: once upgraded, the nginx
// worker keeps the connection and its SignalR state only, so the access
// log has the upgrade's line (101) from the start, a connection idle
// past a keep-alive still carries messages, and frames that came with
// the upgrade request are not lost when the request goes.
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';

import { FragmentStream, HUB_PATH, connect } from './lib/hub.mjs';
import { OPCODE, RawSocket, acceptKeyFor, encodeFrame } from './lib/rawws.mjs';
import { createChat } from './lib/rest.mjs';
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

// the access log lines of the upgrades of a connection
async function upgradeLines(connectionId) {
    return (await stack.accessLog()).split('\n')
        .filter((line) => line.includes(`conn=${connectionId} `) && line.includes('"GET '));
}

describe('the WebSocket after its upgrade request', { concurrency: true }, () => {
    test('the access log has the upgrade, status 101, while the socket is open', async () => {
        const token = await devToken('lifetime-log');
        const connection = await connect(stack, { token });
        try {
            const id = connection.connectionId;
            let lines = [];
            for (let i = 0; i < 30 && lines.length === 0; i++) {
                await sleep(100);
                lines = await upgradeLines(id);
            }
            assert.equal(lines.length, 1, `one line for the upgrade of ${id}`);
            assert.match(lines[0], /" 101 /, `the line has status 101: ${lines[0]}`);
            assert.match(lines[0], / lifetime-log /, 'the line names the user');
            assert.equal(connection.state, 'Connected',
                'the line is there while the connection is still open');
        } finally {
            await connection.stop();
        }
    });

    test('a connection idle past the server\'s keep-alive Ping still streams', async () => {
        const token = await devToken('lifetime-idle');
        const connection = await connect(stack, { token });
        const closed = [];
        connection.onclose((err) => closed.push(err ?? 'closed'));
        try {
            // the server pings after 15 s of silence on its side
            await sleep(17000);
            assert.deepEqual(closed, [], 'the idle connection stayed open');

            const id = await createChat(stack, token, 'Still there after a quiet while?');
            const stream = new FragmentStream(connection, id);
            const fragments = await stream.waitFor(
                (fs) => fs.length > 1 && fs.at(-1).isFinal,
                'the whole reply after the idle time', 20000);
            stream.dispose();
            assert.ok(fragments.length > 1, 'the reply streamed to the idle connection');
            assert.deepEqual(closed, [], 'the connection never closed');
        } finally {
            await connection.stop();
        }
    });

    test('frames sent in the same packet as the upgrade request are read', async () => {
        const token = await devToken('lifetime-early');
        const socket = net.connect(stack.port, '127.0.0.1');
        await once(socket, 'connect');
        const raw = new RawSocket(socket);
        const key = randomBytes(16).toString('base64');
        const head = [`GET ${HUB_PATH} HTTP/1.1`, `Host: 127.0.0.1:${stack.port}`,
            'Upgrade: websocket', 'Connection: Upgrade', 'Sec-WebSocket-Version: 13',
            `Sec-WebSocket-Key: ${key}`, `Authorization: Bearer ${token}`].join('\r\n');
        const handshake = encodeFrame(OPCODE.text,
            Buffer.from(JSON.stringify({ protocol: 'json', version: 1 }) + RECORD_SEPARATOR));
        const ping = encodeFrame(OPCODE.ping, Buffer.from('early'));

        // one write: the frames arrive with the request's head
        raw.send(Buffer.concat([Buffer.from(`${head}\r\n\r\n`, 'latin1'), handshake, ping]));

        const deadline = Date.now() + 5000;
        let end;
        while ((end = raw.buffer.indexOf('\r\n\r\n')) < 0) {
            await raw.more(deadline, 'the response head');
        }
        const answer = raw.buffer.subarray(0, end).toString('latin1');
        raw.buffer = raw.buffer.subarray(end + 4);
        assert.match(answer, /^HTTP\/1\.1 101 /, `the upgrade answers 101: ${answer}`);
        assert.ok(answer.includes(`Sec-WebSocket-Accept: ${acceptKeyFor(key)}`),
            'with the accept key of the request');

        const frames = [await raw.nextFrame(), await raw.nextFrame()];
        const text = frames.find((f) => f.opcode === OPCODE.text);
        const pong = frames.find((f) => f.opcode === OPCODE.pong);
        assert.ok(text, 'the handshake sent with the request is answered');
        assert.equal(text.payload.toString('utf8'), `{}${RECORD_SEPARATOR}`,
            'the handshake succeeds');
        assert.ok(pong, 'the Ping sent with the request is answered');
        assert.equal(pong.payload.toString('utf8'), 'early', 'the Pong carries its payload');

        raw.sendFrame(OPCODE.close, Buffer.from([0x03, 0xe8]));
        const close = await raw.nextClose();
        assert.equal(close.code, 1000, `the close is echoed (got ${close.code})`);
        assert.equal(await raw.waitClosed(), true, 'the server then closes the socket');
    });
});

test('the stack stops cleanly, without sanitizer reports or alerts', async () => {
    const stopped = stack;
    stack = null;
    await stopped.stopCleanly();
});
