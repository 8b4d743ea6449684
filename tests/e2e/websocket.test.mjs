// RFC 6455 at the edge, with hand-built frames on raw sockets: each bad
// client is closed with the right code, and an official client streaming
// on the same stack meanwhile notices nothing.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { FragmentStream, HUB_PATH, connect, textOf } from './lib/hub.mjs';
import { OPCODE, acceptKeyFor, encodeFrame, upgrade } from './lib/rawws.mjs';
import { api, createChat, getChat, messagesOf } from './lib/rest.mjs';
import { startStack } from './lib/stack.mjs';
import { devToken } from './lib/tokens.mjs';

let stack;
let token;
let bystander;

before(async () => {
    // a slow reply, so that the bystander streams through every test here
    stack = await startStack({
        env: { SIGNALRD_DEMO_TOKEN_RATE: '10', SIGNALRD_DEMO_REPLY_TOKENS: '60' },
    });
    token = await devToken('ws-raw');
    const bystanderToken = await devToken('ws-bystander');
    const connection = await connect(stack, { protocol: 'messagepack', token: bystanderToken });
    const id = await createChat(stack, bystanderToken, 'Keep talking while they misbehave.');
    const closed = [];
    connection.onclose((err) => closed.push(err ?? 'closed'));
    bystander = { connection, id, token: bystanderToken, closed,
        stream: new FragmentStream(connection, id) };
});

after(async () => {
    await bystander?.connection.stop();
    await stack?.stop();
});

async function negotiatedId() {
    const response = await api(stack, 'POST', `${HUB_PATH}/negotiate?negotiateVersion=1`,
        { token });
    assert.equal(response.status, 200, `negotiate answers 200 (got ${response.status})`);
    return response.json.connectionToken;
}

function hubPath(id) {
    return `${HUB_PATH}?id=${encodeURIComponent(id)}`;
}

// a WebSocket past the SignalR handshake, on a negotiated connection
async function openHubSocket(protocol = 'json') {
    const ws = await upgrade(stack.port, hubPath(await negotiatedId()),
        { Authorization: `Bearer ${token}` });
    assert.equal(ws.status, 101, `the upgrade answers 101 (got ${ws.status}: ${ws.body})`);
    const answer = await ws.raw.handshake(protocol);
    assert.deepEqual(answer, {}, 'the handshake succeeds');
    return ws.raw;
}

async function assertClosedWith(raw, code, what) {
    const frame = await raw.nextClose();
    assert.equal(frame.code, code, `${what}: the server closes with ${code} (got ${frame.code})`);
    assert.equal(frame.masked, false, `${what}: the server's close frame is not masked`);
    assert.equal(await raw.waitClosed(), true,
        `${what}: the server then closes the TCP connection`);
}

test('the upgrade answers 101 with the RFC 6455 accept key and no extension', async () => {
    const ws = await upgrade(stack.port, hubPath(await negotiatedId()), {
        Authorization: `Bearer ${token}`,
        'Sec-WebSocket-Extensions': 'permessage-deflate; client_max_window_bits',
    });
    assert.equal(ws.status, 101, `the upgrade answers 101 (got ${ws.status})`);
    assert.equal(ws.headers['sec-websocket-accept'], acceptKeyFor(ws.key),
        'Sec-WebSocket-Accept is derived from our key');
    assert.match(ws.headers.upgrade ?? '', /^websocket$/i, 'Upgrade: websocket');
    assert.equal(ws.headers['sec-websocket-extensions'], undefined, 'no extension is accepted');
    ws.raw.close();
});

test('a ping is answered with a pong carrying the same payload', async () => {
    const raw = await openHubSocket();
    raw.sendFrame(OPCODE.ping, 'are you there');
    let frame;
    do {
        frame = await raw.nextFrame();
    } while (frame.opcode !== OPCODE.pong);
    assert.equal(frame.payload.toString(), 'are you there', 'the pong echoes the ping payload');
    raw.close();
});

test('a close frame from the client is echoed, then the server closes', async () => {
    const raw = await openHubSocket();
    const payload = Buffer.alloc(2);
    payload.writeUInt16BE(1000);
    raw.sendFrame(OPCODE.close, payload);
    await assertClosedWith(raw, 1000, 'a normal close');
});

test('an unmasked client frame closes the connection with 1002', async () => {
    const raw = await openHubSocket();
    raw.sendText('{"type":6}\x1e', { mask: false });
    await assertClosedWith(raw, 1002, 'an unmasked frame');
});

test('a reserved bit without an extension closes the connection with 1002', async () => {
    const raw = await openHubSocket();
    raw.sendText('{"type":6}\x1e', { rsv: 4 });
    await assertClosedWith(raw, 1002, 'RSV1 set');
});

test('invalid UTF-8 in a text frame closes the connection with 1007', async () => {
    const raw = await openHubSocket();
    raw.sendFrame(OPCODE.text, Buffer.from([0x7b, 0xc3, 0x28, 0x7d, 0x1e]));
    await assertClosedWith(raw, 1007, 'invalid UTF-8');
});

test('a message over 32 KiB closes the connection with 1009', async () => {
    const raw = await openHubSocket();
    const big = JSON.stringify({ type: 1, target: 'Stream', arguments: ['x'.repeat(40 * 1024)] });
    raw.sendText(`${big}\x1e`);
    await assertClosedWith(raw, 1009, 'a 40 KiB message');
});

// sends `total` bytes of one hub message in 4 KiB fragments; `last` is
// appended to the final fragment, which is FIN when `finish` is set
function sendFragmented(raw, total, { finish, last = '' }) {
    const chunk = Buffer.alloc(4096, 0x20);
    const count = Math.ceil(total / chunk.length);
    for (let i = 0; i < count; i++) {
        const isLast = i === count - 1;
        const payload = isLast ? Buffer.concat([chunk, Buffer.from(last)]) : chunk;
        raw.send(encodeFrame(i === 0 ? OPCODE.text : OPCODE.continuation, payload,
            { fin: isLast && finish }));
    }
}

test('a hub message over 32 KiB sent in fragments closes the connection with 1009',
    async () => {
        const raw = await openHubSocket();
        sendFragmented(raw, 40 * 1024, { finish: true, last: '\x1e' });
        await assertClosedWith(raw, 1009, 'a 40 KiB hub message in 4 KiB fragments');
    });

test('a WebSocket message over the connection budget (1 MiB) closes with 1009',
    async () => {
        const raw = await openHubSocket();
        sendFragmented(raw, 1100 * 1024, { finish: false });
        await assertClosedWith(raw, 1009, '1.1 MiB of fragments without an end');
    });

test('a hub message passing 32 KiB is refused before its WebSocket message ends', {
    todo: 'the module checks hub messages once their WebSocket message is complete, and '
        + 'until then holds up to signalr_send_queue_size (docs/directives.md); ASP.NET Core '
        + 'refuses as soon as 32 KiB pass without a record separator',
}, async () => {
    const raw = await openHubSocket();
    sendFragmented(raw, 40 * 1024, { finish: false });
    await assertClosedWith(raw, 1009, '40 KiB of one hub message, unfinished');
});

test('an unknown SignalR protocol gets a handshake error', async () => {
    const ws = await upgrade(stack.port, hubPath(await negotiatedId()),
        { Authorization: `Bearer ${token}` });
    assert.equal(ws.status, 101, `the upgrade answers 101 (got ${ws.status})`);
    const answer = await ws.raw.handshake('carrier-pigeon');
    assert.equal(typeof answer.error, 'string', 'the handshake response carries an error');
    ws.raw.close();
});

test('an upgrade without Sec-WebSocket-Key answers 400', async () => {
    const ws = await upgrade(stack.port, hubPath(await negotiatedId()),
        { Authorization: `Bearer ${token}`, 'Sec-WebSocket-Key': null });
    assert.equal(ws.status, 400, `no key: 400 (got ${ws.status})`);
});

test('an upgrade with a key that is not 16 bytes of base64 answers 400', async () => {
    const ws = await upgrade(stack.port, hubPath(await negotiatedId()),
        { Authorization: `Bearer ${token}`, 'Sec-WebSocket-Key': 'c2hvcnQ=' });
    assert.equal(ws.status, 400, `a short key: 400 (got ${ws.status})`);
});

test('an upgrade asking for WebSocket version 8 answers 426 naming version 13', async () => {
    const ws = await upgrade(stack.port, hubPath(await negotiatedId()),
        { Authorization: `Bearer ${token}`, 'Sec-WebSocket-Version': '8' });
    assert.equal(ws.status, 426, `version 8: 426 (got ${ws.status})`);
    assert.equal(ws.headers['sec-websocket-version'], '13', 'the answer names version 13');
});

test('an unknown connection id answers 404', async () => {
    const ws = await upgrade(stack.port, hubPath('AAAAAAAAAAAAAAAAAAAAAA'),
        { Authorization: `Bearer ${token}` });
    assert.equal(ws.status, 404, `an unknown id: 404 (got ${ws.status})`);
});

test('a connection id used twice answers 409 the second time', async () => {
    const id = await negotiatedId();
    const first = await upgrade(stack.port, hubPath(id), { Authorization: `Bearer ${token}` });
    assert.equal(first.status, 101, `the first upgrade answers 101 (got ${first.status})`);
    const second = await upgrade(stack.port, hubPath(id), { Authorization: `Bearer ${token}` });
    assert.equal(second.status, 409, `the second upgrade answers 409 (got ${second.status})`);
    first.raw.close();
});

test('a client that skips negotiation connects and streams', async () => {
    const connection = await connect(stack, { token, skipNegotiation: true });
    const id = await createChat(stack, token, 'No negotiate today.');
    const stream = new FragmentStream(connection, id);
    await stream.waitFor((fs) => fs.length >= 2, 'the turn and a reply fragment');
    stream.dispose();
    await connection.stop();
});

// last, so that every misbehaving client above ran while it streamed
test('the official client streaming meanwhile was not disturbed', async () => {
    const { stream, id, closed } = bystander;
    const fragments = await stream.waitFor(
        (fs) => fs.length > 1 && fs.at(-1).isFinal && fs.at(-1).id !== fs[0].id,
        'the end of the bystander\'s reply', 20000);
    assert.deepEqual(closed, [], 'the bystander connection never closed');
    assert.equal(bystander.connection.state, 'Connected', 'the bystander is still connected');
    const [reply] = messagesOf(await getChat(stack, bystander.token, id), 'assistant');
    assert.equal(textOf(fragments, reply.id), reply.text,
        'the bystander received the whole stored reply');
});
