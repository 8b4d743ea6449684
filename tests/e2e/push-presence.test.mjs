// Presence on two instances sharing one Redis: a user is online while
// any of its connections is, on either instance, and offline after the
// last one ends, also when the instance holding it is killed outright
// (its heartbeats stop; presence_ttl is 3 s here). The administrators
// group is told of users coming and going.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { startDeployment } from './lib/deployment.mjs';
import { listener, presenceOf, waitFor, waitKnown } from './lib/push.mjs';
import { devToken } from './lib/tokens.mjs';

const HUB = 'NotificationHub';
const EVENTS = ['UserConnected', 'UserDisconnected'];
let deployment;
let A;
let B;

before(async () => {
    deployment = await startDeployment({
        env: { SIGNALRD_PRESENCE_TTL: '3', SIGNALRD_PRESENCE_EVENTS_GROUP: 'administrators' },
    });
    [A, B] = deployment.stacks;
});

after(async () => {
    await deployment?.stop();
});

const eventsFor = (got, user) => Object.fromEntries(EVENTS.map((name) =>
    [name, got[name].filter((args) => args[0] === user).length]));

async function online(stack, user) {
    return (await presenceOf(stack, HUB, user)).connections;
}

test('a user is online while connected on either instance, offline after the last connection',
    async () => {
        const admin = await listener(A, { token: await devToken('pres-admin', { role: 'admin' }),
            methods: EVENTS });
        await waitKnown(A, HUB, admin.id);
        await sleep(300);
        const token = await devToken('pres-alice');
        const onA = await listener(A, { token, methods: [] });
        await waitKnown(B, HUB, onA.id);
        const onB = await listener(B, { token, methods: [] });
        await waitKnown(A, HUB, onB.id);

        await waitFor(async () => await online(A, 'pres-alice') === 2, 'two connections');
        const all = await presenceOf(B, HUB);
        assert.deepEqual(all.users.find((u) => u.user === 'pres-alice'),
            { user: 'pres-alice', connections: 2 }, 'the hub list shows both connections');
        assert.equal((await presenceOf(B, HUB, 'pres-alice')).online, true, 'online');

        await onA.connection.stop();
        await waitFor(async () => await online(B, 'pres-alice') === 1, 'one connection left');
        assert.equal((await presenceOf(A, HUB, 'pres-alice')).online, true,
            'still online with the connection on B');
        await onB.connection.stop();
        await waitFor(async () => await online(A, 'pres-alice') === 0, 'no connection left');
        const after = await presenceOf(A, HUB, 'pres-alice');
        assert.deepEqual(after, { hub: HUB, user: 'pres-alice', online: false, connections: 0 },
            'offline once the last connection ended');
        assert.equal((await presenceOf(A, HUB)).users.some((u) => u.user === 'pres-alice'), false,
            'and gone from the hub list');

        await waitFor(() => eventsFor(admin.got, 'pres-alice').UserDisconnected === 1,
            'the offline event');
        await sleep(300);
        assert.deepEqual(eventsFor(admin.got, 'pres-alice'),
            { UserConnected: 1, UserDisconnected: 1 },
            'administrators are told once when the user came and once when it left');
        await admin.connection.stop();
    });

test('killing the instance holding a user makes it offline within the presence ttl', async () => {
    const admin = await listener(A, { token: await devToken('pres-admin2', { role: 'admin' }),
        methods: EVENTS });
    await waitKnown(A, HUB, admin.id);
    const bob = await listener(B, { token: await devToken('pres-bob'), methods: [] });
    await waitKnown(A, HUB, bob.id);
    await waitFor(async () => await online(A, 'pres-bob') === 1, 'bob online');

    // the whole instance at once: run-stack, nginx and signalrd, no goodbye
    process.kill(-B.child.pid, 'SIGKILL');
    const killedAt = Date.now();
    await waitFor(async () => await online(A, 'pres-bob') === 0, 'bob offline', 15000);
    const elapsed = Date.now() - killedAt;
    assert.ok(elapsed < 8000, `offline ${elapsed} ms after the kill (ttl 3 s, beats every 1 s)`);
    await waitFor(() => eventsFor(admin.got, 'pres-bob').UserDisconnected === 1,
        'the offline event from the surviving instance');
    assert.equal((await presenceOf(A, HUB, 'pres-admin2')).online, true,
        'users on the surviving instance stay online');
    await admin.connection.stop();
});
