// The per-user and per-address limits, shared by nginx's workers: the
// token bucket on REST calls (429 with Retry-After) and on hub
// invocations (an error Completion, the connection stays open), its
// queue, concurrent connections and streams, and the rate of negotiate
// and upgrade requests per client address. Each time another user's
// stream keeps flowing.
//
// Limits of tests/e2e/security.nginx.conf.in: 10 calls per user, refilled
// at 30 a minute, for REST and invocations together; 4 connections and 5
// streams per user, 3 streams per connection; /queued/stream: 2 calls,
// 3 more waiting, 2 a second; /throttled/stream: 5 requests per address,
// refilled at 1 a second.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { FragmentStream, HUB_PATH, buildConnection, connect } from './lib/hub.mjs';
import { upgrade } from './lib/rawws.mjs';
import { api, assertProblem, createChat } from './lib/rest.mjs';
import { Bystander, makeKeys, startSecurityStack } from './lib/security.mjs';
import { devToken } from './lib/tokens.mjs';

let stack;

before(async () => {
    stack = await startSecurityStack(await makeKeys());
});

after(async () => {
    await stack?.stop();
});

const RATE_LIMITED = /rate limit exceeded/;

test('REST calls over the per-user bucket get 429 with Retry-After', async () => {
    const bystander = await Bystander.start(stack, 'rest-bystander');
    const token = await devToken('rest-flooder');
    const answers = await Promise.all(Array.from({ length: 16 },
        () => api(stack, 'GET', '/api/v1/chats', { token })));
    const ok = answers.filter((r) => r.status === 200).length;
    const limited = answers.filter((r) => r.status === 429);
    assert.ok(ok >= 10 && ok <= 11, `the bucket of 10 lets 10 calls through (got ${ok})`);
    assert.equal(ok + limited.length, 16, 'every other call is answered 429');
    for (const response of limited) {
        assertProblem(response, 429, 'a REST call over the limit');
        assert.equal(response.json.detail, 'rate limit exceeded', 'the reason is given');
        const retry = Number(response.headers.get('retry-after'));
        assert.ok(Number.isInteger(retry) && retry >= 1 && retry <= 3,
            `Retry-After says when to come back (got ${response.headers.get('retry-after')})`);
    }

    const other = await api(stack, 'GET', '/api/v1/chats', { token: await devToken('rest-other') });
    assert.equal(other.status, 200, 'another user is not limited');
    await bystander.assertUnharmed('a REST flood');
});

test('invocations over the bucket get an error Completion and the connection stays', async () => {
    const bystander = await Bystander.start(stack, 'invoke-bystander');
    const connection = await connect(stack, { token: await devToken('invoke-flooder') });
    const results = await Promise.allSettled(Array.from({ length: 14 },
        () => connection.invoke('NoSuchMethod')));
    const errors = results.map((r) => String(r.reason?.message ?? 'fulfilled'));
    const limited = errors.filter((e) => RATE_LIMITED.test(e)).length;
    assert.ok(limited >= 3 && limited <= 4,
        `the 4 invocations past the bucket of 10 are refused (got ${limited}: ${errors})`);
    assert.equal(errors.filter((e) => /fulfilled/.test(e)).length, 0,
        'the others reach the hub, which has no such method');

    // a StreamInvocation takes a token as well
    const stream = new FragmentStream(connection, 'any-conversation');
    const streamError = await stream.waitForError();
    assert.match(streamError.message, RATE_LIMITED, 'a stream over the limit is refused too');
    assert.equal(connection.state, 'Connected', 'the connection stays open');
    await connection.stop();
    await bystander.assertUnharmed('an invocation flood');
});

test('with queue=, invocations over the rate wait for a token instead', async () => {
    const bystander = await Bystander.start(stack, 'queue-bystander');
    const connection = buildConnection(stack, { token: await devToken('queue-user') });
    connection.baseUrl = `${stack.url}/queued/stream`;
    await connection.start();

    const started = Date.now();
    const settled = await Promise.all(Array.from({ length: 7 }, () => connection
        .invoke('NoSuchMethod')
        .then(() => 'fulfilled', (err) => String(err.message))
        .then((outcome) => ({ outcome, ms: Date.now() - started }))));
    const limited = settled.filter((s) => RATE_LIMITED.test(s.outcome));
    const passed = settled.filter((s) => !RATE_LIMITED.test(s.outcome))
        .sort((a, b) => a.ms - b.ms);
    assert.equal(limited.length, 2, `2 of 7 past burst 2 and queue 3 are refused (${
        JSON.stringify(settled)})`);
    assert.equal(passed.length, 5, '5 reach the hub');
    assert.ok(passed[4].ms >= 1200,
        `the last queued one waited for its token at 2 a second (${passed[4].ms} ms)`);
    assert.ok(limited.every((s) => s.ms < passed[4].ms),
        'the refused ones were answered at once, not after the queue');
    assert.equal(connection.state, 'Connected', 'the connection stays open');
    await connection.stop();
    await bystander.assertUnharmed('a queued burst');
});

test('with queue=, REST calls over the rate wait for a token instead', async () => {
    const token = await devToken('queue-rest-user');
    const started = Date.now();
    const answers = await Promise.all(Array.from({ length: 7 }, () => api(stack, 'GET',
        '/queued/api', { token }).then((r) => ({ status: r.status, ms: Date.now() - started }))));
    const passed = answers.filter((a) => a.status === 200).sort((a, b) => a.ms - b.ms);
    const limited = answers.filter((a) => a.status === 429);
    assert.equal(passed.length, 5, `burst 2 and queue 3 let 5 through (${JSON.stringify(answers)})`);
    assert.equal(limited.length, 2, 'the other 2 are answered 429');
    assert.ok(passed[4].ms >= 1200,
        `the last one waited for its token at 2 a second (${passed[4].ms} ms)`);
    assert.ok(limited.every((a) => a.ms < passed[4].ms), 'the 429s came at once');
});

test('a user has at most 4 connections; a closed one frees its place', async () => {
    const bystander = await Bystander.start(stack, 'conn-bystander');
    const token = await devToken('conn-user');
    const open = [];
    for (let i = 0; i < 4; i++) {
        open.push(await connect(stack, { token }));
    }
    await assert.rejects(connect(stack, { token }), /429|Too Many/,
        'the fifth connection of the user is refused with 429');
    const direct = await upgrade(stack.port, `${HUB_PATH}?access_token=${token}`);
    assert.equal(direct.status, 429, 'an upgrade without negotiate is refused with 429 too');
    assert.equal(JSON.parse(direct.body).detail, 'too many connections', 'and says why');
    const other = await connect(stack, { token: await devToken('conn-other') });
    assert.equal(other.state, 'Connected', 'another user still connects');
    await other.stop();

    await open.pop().stop();
    let again = null;
    for (let i = 0; i < 20 && again === null; i++) {
        again = await connect(stack, { token }).catch(() => null);
    }
    assert.ok(again, 'after one closes, the user connects again');
    open.push(again);
    await Promise.all(open.map((c) => c.stop()));
    await bystander.assertUnharmed('a connection cap');
});

test('streams count: 3 per connection and 5 per user, freed when cancelled', async () => {
    const bystander = await Bystander.start(stack, 'stream-bystander');
    const token = await devToken('stream-user');
    const chat = await createChat(stack, token, 'Watch me many times');
    const first = await connect(stack, { token });
    const streams = [];
    for (let i = 0; i < 3; i++) {
        streams.push(new FragmentStream(first, chat));
        await streams[i].waitFor((f) => f.length >= 1, `stream ${i + 1} flowing`);
    }
    const fourth = new FragmentStream(first, chat);
    assert.match((await fourth.waitForError()).message, /too many streams/,
        'a fourth stream on one connection is refused');

    const second = await connect(stack, { token });
    const more = [new FragmentStream(second, chat), new FragmentStream(second, chat)];
    await Promise.all(more.map((s) => s.waitFor((f) => f.length >= 1, 'a stream flowing')));
    const sixth = new FragmentStream(second, chat);
    assert.match((await sixth.waitForError()).message, /too many streams/,
        'a sixth stream of the user, on another connection, is refused');
    assert.equal(second.state, 'Connected', 'the connection stays open');

    streams[0].dispose();
    let freed = null;
    for (let i = 0; i < 20 && freed === null; i++) {
        const attempt = new FragmentStream(second, chat);
        freed = await attempt.waitFor((f) => f.length >= 1, 'a stream after a cancel', 2000)
            .then(() => attempt, () => null);
    }
    assert.ok(freed, 'a cancelled stream frees its place');
    await Promise.all([first.stop(), second.stop()]);
    await bystander.assertUnharmed('a stream cap');
});

test('negotiate and upgrade requests are limited per client address', async () => {
    const bystander = await Bystander.start(stack, 'addr-bystander');
    const token = await devToken('addr-user');
    const answers = await Promise.all(Array.from({ length: 9 }, () => api(stack, 'POST',
        '/throttled/stream/negotiate?negotiateVersion=1', { token })));
    const ok = answers.filter((r) => r.status === 200).length;
    const limited = answers.filter((r) => r.status === 429);
    assert.ok(ok >= 5 && ok <= 6, `5 negotiates pass (got ${ok})`);
    assert.equal(ok + limited.length, 9, 'the others are answered 429');
    for (const response of limited) {
        assertProblem(response, 429, 'a negotiate over the address rate');
        assert.ok(Number(response.headers.get('retry-after')) >= 1, 'with Retry-After');
    }
    const upgradeOver = buildConnection(stack, { token, skipNegotiation: true });
    upgradeOver.baseUrl = `${stack.url}/throttled/stream`;
    await assert.rejects(upgradeOver.start(), /429|Too Many|rror/,
        'an upgrade over the address rate is refused too');
    await bystander.assertUnharmed('a negotiate flood from one address');
});
