// Hostile clients: slow-loris handshakes, half-open sockets, invocation
// floods that never read, reconnect storms, oversized headers and query
// strings, truncated frames and envelopes over the configured bounds.
// Each gets the answer it should while another user's stream flows.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { after, before, test } from 'node:test';

import { HUB_PATH, connect } from './lib/hub.mjs';
import { OPCODE, rawRequest, upgrade } from './lib/rawws.mjs';
import {
    Bystander, RECORD_SEPARATOR, hubMessages, makeKeys, rawHub, readToClose, sleep,
    startSecurityStack,
} from './lib/security.mjs';
import { devToken } from './lib/tokens.mjs';

let stack;

before(async () => {
    stack = await startSecurityStack(await makeKeys());
});

after(async () => {
    await stack?.stop();
});

function invocation(id, args = []) {
    return JSON.stringify({ type: 1, invocationId: id, target: 'NoSuchMethod', arguments: args })
        + RECORD_SEPARATOR;
}

test('a slow-loris handshake is closed by the handshake timeout (1008)', async () => {
    const bystander = await Bystander.start(stack, 'loris-bystander');
    const token = await devToken('loris');
    const ws = await upgrade(stack.port, `${HUB_PATH}?access_token=${token}`);
    assert.equal(ws.status, 101, 'the upgrade is accepted');
    const started = Date.now();
    const dribble = setInterval(() => ws.raw.sendText('{'), 300);
    try {
        const close = await ws.raw.nextClose(6000);
        assert.equal(close.code, 1008, 'closed with 1008 (policy violation)');
        const elapsed = Date.now() - started;
        assert.ok(elapsed >= 1500 && elapsed < 5000,
            `after the 2 s handshake timeout, whatever trickles in (${elapsed} ms)`);
    } finally {
        clearInterval(dribble);
    }
    assert.equal(await ws.raw.waitClosed(7000), true, 'the TCP connection is closed');
    await bystander.assertUnharmed('a slow-loris handshake');
});

test('half-open sockets are dropped: silent TCP, and a hub client gone quiet', async () => {
    const bystander = await Bystander.start(stack, 'halfopen-bystander');
    const silent = net.connect(stack.port, '127.0.0.1');
    await once(silent, 'connect');
    const silentClosed = once(silent, 'close');

    const raw = await rawHub(stack, HUB_PATH, await devToken('quiet'));
    const started = Date.now();
    const close = await raw.nextClose(9000);
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 4000, `the quiet client is kept for the 5 s client timeout (${elapsed})`);
    assert.equal(close.code, 1000, 'then closed normally after a Close message');
    assert.equal(await raw.waitClosed(7000), true, 'and its TCP connection ends');

    await Promise.race([silentClosed,
        sleep(8000).then(() => { throw new Error('a silent TCP connection is kept'); })]);
    await bystander.assertUnharmed('half-open sockets');
});

test('an invocation flood that never reads is cut off at the send queue bound', async () => {
    const bystander = await Bystander.start(stack, 'flood-bystander');
    const raw = await rawHub(stack, HUB_PATH, await devToken('flooder'));
    raw.socket.pause();
    // up to 200,000 invocations; all but the first few are refused with a
    // Completion each, which this client does not read: more than the
    // kernel's socket buffers and the 64k send queue hold
    const batch = Array.from({ length: 400 }, (_, i) => invocation(`f${i}`)).join('');
    const { encodeFrame } = await import('./lib/rawws.mjs');
    const frame = encodeFrame(OPCODE.text, Buffer.from(batch));
    for (let i = 0; i < 500 && !raw.socket.destroyed; i++) {
        if (!raw.socket.write(frame)) {
            const drained = await Promise.race([once(raw.socket, 'drain').then(() => true),
                sleep(3000).then(() => false)]);
            if (!drained) {
                break;
            }
        }
    }
    raw.socket.resume();
    const { close, messages } = await readToClose(raw);
    const closeMessage = messages.find((m) => m.type === 7);
    assert.equal(close.code, 1008, `closed with 1008 once its queue is full (got ${close.code}, `
        + `${JSON.stringify(closeMessage)})`);
    assert.equal(closeMessage?.error, 'send queue full', 'the Close message says why');
    assert.ok(messages.filter((m) => m.type === 3).length > 100,
        'the Completions queued before the bound were delivered');
    assert.equal(await raw.waitClosed(8000), true, 'the TCP connection ends');
    const log = stack.logTail(400);
    assert.match(log, /send queue is full/, 'the error log names the reason');
    await bystander.assertUnharmed('a flood without reading');
});

test('a reconnect storm of one user is capped and leaves no connection counted', async () => {
    const bystander = await Bystander.start(stack, 'storm-bystander');
    const token = await devToken('storm');
    const statuses = [];
    for (let round = 0; round < 3; round++) {
        const attempts = await Promise.all(Array.from({ length: 40 },
            () => upgrade(stack.port, `${HUB_PATH}?access_token=${token}`)));
        statuses.push(...attempts.map((a) => a.status));
        const accepted = attempts.filter((a) => a.status === 101);
        assert.ok(accepted.length <= 4, `at most 4 at a time (round ${round}: ${accepted.length})`);
        attempts.forEach((a) => a.raw.close());
        await sleep(200);
    }
    assert.deepEqual([...new Set(statuses)].sort(), [101, 429],
        'each attempt is accepted or refused with 429');

    let open = [];
    for (let i = 0; i < 30 && open.length < 4; i++) {
        const c = await connect(stack, { token }).catch(() => null);
        if (c) {
            open.push(c);
        } else {
            await sleep(200);
        }
    }
    assert.equal(open.length, 4, 'afterwards the user has all 4 connections again');
    await Promise.all(open.map((c) => c.stop()));
    open = [];
    await bystander.assertUnharmed('a reconnect storm');
});

test('oversized headers and query strings are refused by nginx', async () => {
    const bystander = await Bystander.start(stack, 'big-bystander');
    const header = await rawRequest(stack.port, {
        path: `${HUB_PATH}/negotiate`, method: 'POST', headers: { 'X-Big': 'a'.repeat(20000) },
    });
    assert.equal(header.status, 400, `a 20 kB header is answered 400 (got ${header.status})`);
    const query = await rawRequest(stack.port, {
        path: `${HUB_PATH}?access_token=${'b'.repeat(20000)}`,
    });
    assert.equal(query.status, 414, `a 20 kB query string is answered 414 (got ${query.status})`);
    const many = {};
    for (let i = 0; i < 200; i++) {
        many[`X-H${i}`] = 'c'.repeat(200);
    }
    const headers = await rawRequest(stack.port, { path: '/healthz', headers: many });
    assert.equal(headers.status, 400, `40 kB of headers are answered 400 (got ${headers.status})`);
    await bystander.assertUnharmed('oversized requests');
});

test('truncated frames and envelopes over the bounds close only that connection',
    async () => {
        const bystander = await Bystander.start(stack, 'trunc-bystander');
        const token = await devToken('truncator');

        // a frame header that promises 100 bytes, 10 sent, then EOF
        const cut = await rawHub(stack, HUB_PATH, token);
        const frame = Buffer.concat([Buffer.from([0x81, 0x80 | 100, 1, 2, 3, 4]),
            Buffer.alloc(10, 0x41)]);
        cut.send(frame);
        cut.socket.end();
        assert.equal(await cut.waitClosed(7000), true, 'a frame cut by EOF ends the connection');

        // a JSON hub message that never ends, past signalr_max_message_size
        const endless = await rawHub(stack, HUB_PATH, token);
        endless.sendText(`{"type":1,"target":"x","arguments":["${'d'.repeat(5000)}`);
        assert.equal((await endless.nextClose()).code, 1009, 'an endless message closes with 1009');
        endless.close();

        // MessagePack length prefixes: one naming 2^35 bytes, one of six
        // bytes naming nothing
        const huge = await rawHub(stack, HUB_PATH, token, 'messagepack');
        huge.sendFrame(OPCODE.binary, Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x01]));
        assert.equal((await huge.nextClose()).code, 1009,
            'a length prefix over signalr_max_message_size closes with 1009');
        huge.close();

        const overlong = await rawHub(stack, HUB_PATH, token, 'messagepack');
        overlong.sendFrame(OPCODE.binary, Buffer.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x00]));
        assert.equal((await overlong.nextClose()).code, 1000,
            'a length prefix over 5 bytes gets a Close message, then a normal close');
        overlong.close();

        const longId = await rawHub(stack, HUB_PATH, token);
        longId.sendText(invocation('i'.repeat(33)));
        assert.equal((await longId.nextClose()).code, 1009,
            'an invocation id over signalr_max_invocation_id closes with 1009');
        longId.close();

        const manyArgs = await rawHub(stack, HUB_PATH, token);
        manyArgs.sendText(invocation('a1', Array.from({ length: 9 }, (_, i) => i)));
        assert.equal((await manyArgs.nextClose()).code, 1009,
            'more than signalr_max_arguments arguments close with 1009');
        manyArgs.close();

        // within the bounds the same user is answered as usual
        const fine = await rawHub(stack, HUB_PATH, token);
        fine.sendText(invocation('i'.repeat(32), Array.from({ length: 8 }, (_, i) => i)));
        const frameBack = await fine.nextFrame(5000);
        const [completion] = hubMessages(frameBack).filter((m) => m.type === 3);
        assert.equal(completion?.invocationId, 'i'.repeat(32),
            'an invocation at the bounds gets its Completion');
        fine.close();
        await bystander.assertUnharmed('truncated and oversized frames');
    });
