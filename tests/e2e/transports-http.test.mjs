// The HTTP transports as the spec words them, with plain requests: the
// mandatory id, 404 for unknown or ended connections, overlapping polls,
// DELETE, the poll timeout, the end of a connection nobody polls, the
// framing and headers of Server-Sent Events, and tokens on every request.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { HUB_PATH } from './lib/hub.mjs';
import { startStack } from './lib/stack.mjs';
import { devToken } from './lib/tokens.mjs';

// signalr_long_polling_timeout 5s and signalr_disconnect_timeout 4s here
const LP_PATH = '/api/v1/chats/stream-long-polling';
const RS = '\u001e';
let stack;
let token;

before(async () => {
    stack = await startStack();
    token = await devToken('tp-http');
});

after(async () => {
    await stack?.stop();
});

function request(path, { method = 'GET', body, headers = {}, timeoutMs = 15000, auth = true } = {}) {
    return fetch(`${stack.url}${path}`, {
        method,
        body,
        headers: { ...(auth ? { Authorization: `Bearer ${token}` } : {}), ...headers },
        signal: AbortSignal.timeout(timeoutMs),
    });
}

async function negotiate(path = HUB_PATH) {
    const response = await request(`${path}/negotiate?negotiateVersion=1`, { method: 'POST' });
    assert.equal(response.status, 200, 'negotiate answers 200');
    return (await response.json()).connectionToken;
}

function poll(path, id, options = {}) {
    return request(`${path}?id=${encodeURIComponent(id)}&_=${Date.now()}`, options);
}

function post(path, id, body) {
    return request(`${path}?id=${encodeURIComponent(id)}`, {
        method: 'POST', body, headers: { 'Content-Type': 'text/plain' },
    });
}

async function health() {
    const response = await fetch(`${stack.url}/healthz`);
    return response.json();
}

test('a POST, a poll and a DELETE without id answer 400', async () => {
    for (const method of ['POST', 'GET', 'DELETE']) {
        const response = await request(HUB_PATH, { method, body: method === 'POST' ? '{}' : undefined });
        assert.equal(response.status, 400, `${method} without id: 400 (got ${response.status})`);
        assert.equal((await response.json()).status, 400, `${method}: a JSON problem body`);
    }
});

test('unknown ids answer 404 for a poll, a stream, a POST and a DELETE', async () => {
    const id = 'no-such-connection-token';
    assert.equal((await poll(HUB_PATH, id)).status, 404, 'poll: 404');
    assert.equal((await poll(HUB_PATH, id, { headers: { Accept: 'text/event-stream' } })).status,
        404, 'event stream: 404');
    assert.equal((await post(HUB_PATH, id, '{}')).status, 404, 'POST: 404');
    assert.equal((await request(`${HUB_PATH}?id=${id}`, { method: 'DELETE' })).status, 404,
        'DELETE: 404');
});

test('every request needs the token; SSE may carry it in the query string', async () => {
    const id = await negotiate();
    const bare = await fetch(`${stack.url}${HUB_PATH}?id=${id}`, {
        headers: { Accept: 'text/event-stream' }, signal: AbortSignal.timeout(5000),
    });
    assert.equal(bare.status, 401, `an event stream without a token: 401 (got ${bare.status})`);
    const anonymous = await request(`${HUB_PATH}?id=${id}`,
        { method: 'POST', body: '{}', auth: false });
    assert.equal(anonymous.status, 401, 'a POST without a token: 401');

    const other = await devToken('tp-http-intruder');
    const stolen = await fetch(`${stack.url}${HUB_PATH}?id=${id}&access_token=${other}`, {
        headers: { Accept: 'text/event-stream' }, signal: AbortSignal.timeout(5000),
    });
    assert.equal(stolen.status, 403, 'another user\'s connection: 403');

    const controller = new AbortController();
    const sse = await fetch(`${stack.url}${HUB_PATH}?id=${id}&access_token=${token}`, {
        headers: { Accept: 'text/event-stream' }, signal: controller.signal,
    });
    assert.equal(sse.status, 200, 'the token in access_token opens the stream');
    controller.abort();
});

test('an event stream: headers, data lines, no buffering, 409 for a second one', async () => {
    const id = await negotiate();
    const controller = new AbortController();
    const sse = await fetch(`${stack.url}${HUB_PATH}?id=${id}`, {
        headers: { Authorization: `Bearer ${token}`, Accept: 'text/event-stream' },
        signal: controller.signal,
    });
    assert.equal(sse.status, 200, 'the stream opens with 200');
    assert.match(sse.headers.get('content-type'), /^text\/event-stream/, 'Content-Type');
    assert.equal(sse.headers.get('x-accel-buffering'), 'no', 'X-Accel-Buffering: no');
    assert.match(sse.headers.get('cache-control') ?? '', /no-cache/, 'Cache-Control: no-cache');

    const second = await poll(HUB_PATH, id, { headers: { Accept: 'text/event-stream' } });
    assert.equal(second.status, 409, `a second stream for the connection: 409 (got ${second.status})`);

    const reader = sse.body.getReader();
    const decoder = new TextDecoder();
    let text = '';
    const handshake = await post(HUB_PATH, id, `{"protocol":"json","version":1}${RS}`);
    assert.equal(handshake.status, 200, 'the handshake POST answers 200');
    // the answer arrives while the stream stays open: nothing holds it back
    while (!text.includes('\r\n\r\n')) {
        const { value, done } = await reader.read();
        assert.equal(done, false, 'the stream stays open');
        text += decoder.decode(value, { stream: true });
    }
    assert.equal(text, `data: {}${RS}\r\n\r\n`, 'the handshake answer is one event of data lines');

    const ping = await post(HUB_PATH, id, `{"type":6}${RS}`);
    assert.equal(ping.status, 200, 'a ping POST answers 200');
    await reader.cancel();
    controller.abort();

    // the stream was the connection: once it is gone, so is the connection
    await sleep(300);
    assert.equal((await post(HUB_PATH, id, `{"type":6}${RS}`)).status, 404,
        'a POST after the stream closed: 404');
});

test('long polling: first poll at once, a new poll ends the old with 204, DELETE, then 404',
    async () => {
        const id = await negotiate(LP_PATH);
        const first = await poll(LP_PATH, id);
        assert.equal(first.status, 200, 'the first poll answers 200 at once');
        assert.equal(await first.text(), '', 'with no body');

        const waiting = poll(LP_PATH, id);
        await sleep(300);
        const replacing = poll(LP_PATH, id);
        const old = await waiting;
        assert.equal(old.status, 204, `the overlapped poll ends with 204 (got ${old.status})`);

        await sleep(200);
        const handshake = await post(LP_PATH, id, `{"protocol":"json","version":1}${RS}`);
        assert.equal(handshake.status, 200, 'the handshake POST answers 200');
        const answered = await replacing;
        assert.equal(answered.status, 200, 'the waiting poll gets the handshake answer');
        assert.equal(await answered.text(), `{}${RS}`, 'the body is the framed answer');

        const last = poll(LP_PATH, id);
        await sleep(200);
        const deleted = await request(`${LP_PATH}?id=${id}`, { method: 'DELETE' });
        assert.equal(deleted.status, 202, `DELETE answers 202 (got ${deleted.status})`);
        assert.equal((await last).status, 204, 'DELETE ends the waiting poll with 204');
        assert.equal((await poll(LP_PATH, id)).status, 404, 'a poll after DELETE: 404');
        assert.equal((await post(LP_PATH, id, `{"type":6}${RS}`)).status, 404,
            'a POST after DELETE: 404');
    });

test('long polling: a poll with nothing to say is answered 200 empty at the timeout',
    async () => {
        const id = await negotiate(LP_PATH);
        await (await poll(LP_PATH, id)).text();
        const started = Date.now();
        const response = await poll(LP_PATH, id, { timeoutMs: 20000 });
        const waited = Date.now() - started;
        assert.equal(response.status, 200, 'the timed out poll answers 200');
        assert.equal(await response.text(), '', 'with an empty body');
        assert.ok(waited >= 4500 && waited < 9000, `it waited about 5 s (${waited} ms)`);
        await request(`${LP_PATH}?id=${id}`, { method: 'DELETE' });
    });

test('long polling: a connection nobody polls ends after the disconnect timeout',
    async () => {
        const before = (await health()).connections;
        const id = await negotiate(LP_PATH);
        await (await poll(LP_PATH, id)).text();
        assert.equal((await post(LP_PATH, id, `{"protocol":"json","version":1}${RS}`)).status,
            200, 'the handshake POST answers 200');
        await sleep(300);
        assert.equal((await health()).connections, before + 1, 'the daemon knows the connection');

        await sleep(5000);
        assert.equal((await health()).connections, before, 'the daemon was told it ended');
        assert.equal((await poll(LP_PATH, id)).status, 404, 'and it is gone: 404');
    });

test('a poll for a connection that streams Server-Sent Events is refused',
    async () => {
        const id = await negotiate();
        const controller = new AbortController();
        const sse = await fetch(`${stack.url}${HUB_PATH}?id=${id}`, {
            headers: { Authorization: `Bearer ${token}`, Accept: 'text/event-stream' },
            signal: controller.signal,
        });
        assert.equal(sse.status, 200, 'the stream opens');
        const wrong = await poll(HUB_PATH, id);
        assert.equal(wrong.status, 400, `a poll for an SSE connection: 400 (got ${wrong.status})`);
        controller.abort();
    });

test('the stack stops cleanly', async () => {
    const result = await stack.stop();
    assert.deepEqual(result, { code: 0, signal: null }, `run-stack exits 0\n${stack.logTail()}`);
    assert.doesNotMatch(stack.logTail(2000), /AddressSanitizer|LeakSanitizer|runtime error:|\[alert\]/,
        'no sanitizer report and no alert');
});
