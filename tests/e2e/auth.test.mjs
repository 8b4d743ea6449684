// Authentication at the edge and ownership in the daemon: without a
// valid token nothing gets through, and one user cannot see, stream or
// cancel another user's conversation.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { FragmentStream, HUB_PATH, connect } from './lib/hub.mjs';
import { upgrade } from './lib/rawws.mjs';
import { api, assertProblem, cancelChat, createChat, getChat } from './lib/rest.mjs';
import { startStack } from './lib/stack.mjs';
import { badTokens, devToken } from './lib/tokens.mjs';

let stack;
let alice;
let bob;

before(async () => {
    stack = await startStack({
        env: { SIGNALRD_DEMO_TOKEN_RATE: '100', SIGNALRD_DEMO_REPLY_TOKENS: '20' },
    });
    alice = await devToken('auth-alice');
    bob = await devToken('auth-bob');
});

after(async () => {
    await stack?.stop();
});

// every way of presenting no valid token, by name
function refusedCredentials() {
    return { 'no token': undefined, ...badTokens('auth-alice') };
}

function negotiate(token) {
    return api(stack, 'POST', `${HUB_PATH}/negotiate?negotiateVersion=1`, { token });
}

test('a valid token negotiates a connection', async () => {
    const response = await negotiate(alice);
    assert.equal(response.status, 200, `negotiate answers 200 (got ${response.status})`);
    assert.equal(typeof response.json?.connectionId, 'string', 'the answer has a connectionId');
    assert.equal(typeof response.json?.connectionToken, 'string',
        'negotiate version 1 answers a connectionToken');
    assert.notEqual(response.json.connectionToken, response.json.connectionId,
        'the connection token is not the public connection id');
});

for (const [name, token] of Object.entries(refusedCredentials())) {
    test(`${name}: 401 on negotiate, on the WebSocket and on REST`, async () => {
        const negotiated = await negotiate(token);
        assertProblem(negotiated, 401, `negotiate with ${name}`);
        assert.match(negotiated.headers.get('www-authenticate') ?? '', /^Bearer/,
            'the 401 asks for a bearer token');

        const query = token ? `?access_token=${encodeURIComponent(token)}` : '';
        const ws = await upgrade(stack.port, `${HUB_PATH}${query}`);
        assert.equal(ws.status, 401, `the WebSocket upgrade with ${name} answers 401`);

        const headerWs = await upgrade(stack.port, HUB_PATH,
            { Authorization: token ? `Bearer ${token}` : undefined });
        assert.equal(headerWs.status, 401,
            `the WebSocket upgrade with ${name} in Authorization answers 401`);

        for (const [method, path] of [['GET', '/api/v1/chats'], ['POST', '/api/v1/chats']]) {
            const response = await api(stack, method, path,
                { token, body: method === 'POST' ? { prompt: { text: 'hi' } } : undefined });
            assertProblem(response, 401, `${method} ${path} with ${name}`);
        }
    });
}

test('the official client fails to start with an expired token', async () => {
    const expired = badTokens('auth-alice')['an expired token'];
    await assert.rejects(connect(stack, { token: expired }), /401|Unauthorized/,
        'start() rejects and names the 401');
});

test('REST takes the token from the Authorization header only, not the query', async () => {
    const response = await api(stack, 'GET',
        `/api/v1/chats?access_token=${encodeURIComponent(alice)}`);
    assertProblem(response, 401, 'GET /api/v1/chats with the token in the query');
});

test('a token in the access_token query argument never reaches the access log', async () => {
    const negotiated = await negotiate(alice);
    const id = negotiated.json.connectionToken;
    const ws = await upgrade(stack.port,
        `${HUB_PATH}?id=${encodeURIComponent(id)}&access_token=${encodeURIComponent(alice)}`);
    assert.equal(ws.status, 101,
        `the upgrade with the token in the query answers 101 (got ${ws.status})`);
    ws.raw.close();

    // the line of an upgrade is written once it is answered, a moment
    // after the client saw the 101
    let log = '';
    for (let i = 0; i < 50 && !log.includes('access_token='); i++) {
        await sleep(100);
        log = await stack.accessLog();
    }
    assert.match(log, /access_token=/, 'the access log has the upgrade request');
    assert.equal(log.includes(alice), false, 'the access log does not contain the token');
    assert.equal(log.includes(alice.split('.')[2]), false,
        'the access log does not contain the token signature');
});

test('a connection negotiated by one user cannot be attached with another\'s token',
    async () => {
        const negotiated = await negotiate(alice);
        const ws = await upgrade(stack.port,
            `${HUB_PATH}?id=${encodeURIComponent(negotiated.json.connectionToken)}`,
            { Authorization: `Bearer ${bob}` });
        assert.equal(ws.status, 403, `the upgrade answers 403 (got ${ws.status})`);
    });

// one conversation of alice's, its reply still running for the first checks
let alices;

test('another user gets 404 reading or cancelling a conversation', async () => {
    alices = await createChat(stack, alice, 'Only for alice');
    const read = await api(stack, 'GET', `/api/v1/chats/${alices}`, { token: bob });
    assertProblem(read, 404, 'bob reading alice\'s conversation');
    const cancel = await cancelChat(stack, bob, alices);
    assertProblem(cancel, 404, 'bob cancelling alice\'s conversation');

    const list = await api(stack, 'GET', '/api/v1/chats', { token: bob });
    assert.equal(list.status, 200, 'bob can list his own conversations');
    assert.equal(list.text.includes(alices), false,
        'bob\'s list does not show alice\'s conversation');
});

test('another user gets 404 adding a turn, even while a reply runs', async () => {
    const id = await createChat(stack, alice, 'Busy replying to alice');
    const change = await api(stack, 'PUT', `/api/v1/chats/${id}`,
        { token: bob, body: { id, prompt: { text: 'bob was here' } } });
    assertProblem(change, 404, 'bob adding a turn to alice\'s conversation');
});

test('another user gets a hub error streaming, and 404 deleting, a conversation',
    async () => {
        const connection = await connect(stack, { token: bob });
        const error = await new FragmentStream(connection, alices).waitForError();
        assert.match(error.message, /\S/, 'streaming alice\'s conversation fails for bob');
        await connection.stop();

        const remove = await api(stack, 'DELETE', `/api/v1/chats/${alices}`, { token: bob });
        assertProblem(remove, 404, 'bob deleting alice\'s conversation');

        const conversation = await getChat(stack, alice, alices);
        assert.deepEqual(conversation.messages.filter((m) => m.role === 'user')
            .map((m) => m.text), ['Only for alice'], 'alice\'s conversation is untouched');
    });

test('a client cannot choose its user with the X-SignalR-User header', async () => {
    const id = await createChat(stack, alice, 'Mine, not bob\'s');
    const spoofed = await api(stack, 'GET', `/api/v1/chats/${id}`,
        { token: bob, headers: { 'X-SignalR-User': 'auth-alice' } });
    assertProblem(spoofed, 404, 'bob claiming to be alice in X-SignalR-User');
    const anonymous = await api(stack, 'GET', `/api/v1/chats/${id}`,
        { headers: { 'X-SignalR-User': 'auth-alice' } });
    assertProblem(anonymous, 401, 'no token but X-SignalR-User');
});
