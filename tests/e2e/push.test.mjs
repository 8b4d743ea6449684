// The push API through nginx, on two instances sharing one Redis: every
// endpoint with its success and error answers, a user's connections on
// both instances each getting a message once (excluded ones none), the
// claim rule that puts admins in "administrators", push hubs refusing
// client invocations, and signalrctl driving the same API.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { startDeployment } from './lib/deployment.mjs';
import { connect } from './lib/hub.mjs';
import {
    NOTIFICATIONS, ORDERS, accessToken, hubRoute, listener, presenceOf, push, sendTo,
    signalrctlPush, waitFor, waitKnown,
} from './lib/push.mjs';
import { devToken } from './lib/tokens.mjs';

const HUB = 'NotificationHub';
let deployment;
let A;
let B;

before(async () => {
    deployment = await startDeployment();
    [A, B] = deployment.stacks;
});

after(async () => {
    await deployment?.stop();
});

const count = (list, tag) => list.filter((args) => args[0] === tag).length;

test('health answers without a token; a bad, missing, foreign or stale token is 401', async () => {
    for (const route of ['/api/health', '/api/v1/health']) {
        const head = await push(A, 'HEAD', route, { token: null });
        assert.equal(head.status, 200, `HEAD ${route} is 200 while Redis is up`);
    }
    const route = hubRoute(HUB, '/:send');
    const url = `${A.url}${route}`;
    const body = { target: 'ReceiveNotification', arguments: ['x'] };
    const cases = [
        ['no token', null],
        ['another key', accessToken(url, { key: 'not-the-access-key-0123456789abcdef' })],
        ['another URL as audience', accessToken(`${A.url}/api/hubs/OrderHub/:send`)],
        ['an expired token', accessToken(url, { claims: { exp: 1000 } })],
        ['not a JWT', 'abc.def'],
    ];
    for (const [what, token] of cases) {
        const response = await push(A, 'POST', route, { body, token });
        assert.equal(response.status, 401, `${what}: 401 (${response.text})`);
        assert.equal(response.headers.get('www-authenticate'), 'Bearer', `${what}: challenge`);
        assert.equal(response.json?.code, 'Unauthorized', `${what}: an Azure-style error code`);
    }
    const unknown = await push(A, 'POST', hubRoute('NoSuchHub', '/:send'), { body });
    assert.equal(unknown.status, 404, `an unknown hub is 404 (${unknown.text})`);
    assert.match(unknown.json.message, /NoSuchHub/, 'the error names the hub');
    const strangers = await push(A, 'POST', hubRoute('NoSuchHub', '/:send'), { body, token: null });
    assert.equal(strangers.status, 401, 'without a token even an unknown hub is 401');
});

test('malformed requests are 400, unknown paths 404, wrong methods 405', async () => {
    const route = hubRoute(HUB, '/:send');
    for (const [what, body] of [['no target', { arguments: [] }], ['empty target', { target: '' }],
        ['arguments not an array', { target: 'X', arguments: 'no' }], ['not JSON', '{']]) {
        const response = await push(A, 'POST', route, { body });
        assert.equal(response.status, 400, `${what}: 400 (${response.text})`);
    }
    const badName = await push(A, 'POST', '/api/hubs/1bad/:send', { body: { target: 'X' } });
    assert.equal(badName.status, 400, 'a hub name must start with a letter');
    const badEscape = await push(A, 'HEAD', hubRoute(HUB, '/users/%zz'));
    assert.equal(badEscape.status, 400, 'a bad percent-escape is 400');
    const nothing = await push(A, 'GET', hubRoute(HUB, '/nothing/here'));
    assert.equal(nothing.status, 404, 'an unknown path is 404');
    const method = await push(A, 'GET', route);
    assert.equal(method.status, 405, ':send only takes POST');
    assert.equal(method.headers.get('allow'), 'POST', 'and says so');
    const ttl = await push(A, 'PUT', hubRoute(HUB, '/users/u/groups/g'), { query: { ttl: '-1' } });
    assert.equal(ttl.status, 400, 'a ttl that is not a number of seconds is 400');
});

test('existence checks, group membership of connections and users, close', async () => {
    const token = await devToken('push-member');
    const one = await listener(A, { token, methods: ['ReceiveNotification'] });
    const two = await listener(B, { token, methods: ['ReceiveNotification'] });
    await waitKnown(A, HUB, one.id);
    await waitKnown(A, HUB, two.id);
    const head = (rest) => push(B, 'HEAD', hubRoute(HUB, rest)).then((r) => r.status);

    assert.equal(await head(`/connections/${one.id}`), 200, 'a connection on A is seen from B');
    assert.equal(await head('/connections/no-such-id'), 404, 'an unknown connection is 404');
    assert.equal(await head('/users/push-member'), 200, 'a connected user exists');
    assert.equal(await head('/users/push-nobody'), 404, 'an absent user is 404');
    assert.equal(await head('/groups/readers'), 404, 'an empty group is 404');

    const join = await push(B, 'PUT', hubRoute(HUB, `/groups/readers/connections/${one.id}`));
    assert.equal(join.status, 200, `a connection on A joins from B (${join.text})`);
    const ghost = await push(A, 'PUT', hubRoute(HUB, '/groups/readers/connections/ghost'));
    assert.equal(ghost.status, 404, 'joining a connection nobody holds is 404');
    await waitFor(async () => await head('/groups/readers') === 200, 'the group to exist');

    await sendTo(A, HUB, '/groups/readers', 'ReceiveNotification', ['group-1']);
    await waitFor(() => count(one.got.ReceiveNotification, 'group-1') === 1, 'the group message');
    assert.equal(count(two.got.ReceiveNotification, 'group-1'), 0, 'non-members get nothing');

    const leave = await push(A, 'DELETE', hubRoute(HUB, `/groups/readers/connections/${one.id}`));
    assert.equal(leave.status, 200, 'a connection leaves the group');
    await waitFor(async () => await head('/groups/readers') === 404, 'the group to empty');

    const addUser = await push(A, 'PUT', hubRoute(HUB, '/users/push-member/groups/fans'));
    assert.equal(addUser.status, 200, 'a user joins a group');
    assert.equal(await head('/users/push-member/groups/fans'), 200, 'the user is in it');
    assert.equal(await head('/users/push-member/groups/other'), 404, 'and not in another');
    await waitFor(async () => await head('/groups/fans') === 200, 'the user group to exist');
    await sendTo(B, HUB, '/groups/fans', 'ReceiveNotification', ['fans-1']);
    await waitFor(() => count(one.got.ReceiveNotification, 'fans-1') === 1
        && count(two.got.ReceiveNotification, 'fans-1') === 1,
    'both connections of the user to get the group message');

    const late = await listener(B, { token, methods: ['ReceiveNotification'] });
    await waitKnown(A, HUB, late.id);
    await sleep(300);
    await sendTo(A, HUB, '/groups/fans', 'ReceiveNotification', ['fans-2']);
    await waitFor(() => count(late.got.ReceiveNotification, 'fans-2') === 1,
        'a connection the user opens later to be in the group too');

    const removeUser = await push(A, 'DELETE', hubRoute(HUB, '/users/push-member/groups/fans'));
    assert.equal(removeUser.status, 204, 'a user leaves a group: 204');
    assert.equal(await head('/users/push-member/groups/fans'), 404, 'no longer in it');
    await push(A, 'PUT', hubRoute(HUB, '/users/push-member/groups/g1'));
    await push(A, 'PUT', hubRoute(HUB, '/users/push-member/groups/g2'));
    const all = await push(A, 'DELETE', hubRoute(HUB, '/users/push-member/groups'));
    assert.equal(all.status, 204, 'a user leaves every group: 204');
    assert.equal(await head('/users/push-member/groups/g2'), 404, 'g2 is gone too');
    await push(A, 'PUT', hubRoute(HUB, `/groups/solo/connections/${two.id}`));
    const leaveAll = await push(A, 'DELETE', hubRoute(HUB, `/connections/${two.id}/groups`));
    assert.equal(leaveAll.status, 200, 'a connection leaves every group');
    await waitFor(async () => await head('/groups/solo') === 404, 'its group to empty');

    const closed = new Promise((resolve) => { late.connection.onclose(resolve); });
    const close = await push(A, 'DELETE', hubRoute(HUB, `/connections/${late.id}`),
        { query: { reason: 'bye' } });
    assert.equal(close.status, 200, 'closing a connection on B from A is 200');
    const error = await closed;
    assert.match(String(error?.message), /bye/, 'the client is told the reason');
    await waitFor(async () => await head(`/connections/${late.id}`) === 404,
        'the closed connection to be gone');
    await Promise.all([one.connection.stop(), two.connection.stop()]);
});

test(':closeConnections closes a group\'s members but the excluded, and a user\'s', async () => {
    const token = await devToken('push-closer');
    const conns = [await listener(A, { token, methods: [] }),
        await listener(B, { token, methods: [] }), await listener(B, { token, methods: [] })];
    const closed = conns.map((c) => new Promise((resolve) => { c.connection.onclose(resolve); }));
    for (const c of conns) {
        await waitKnown(A, HUB, c.id);
        const joined = await push(A, 'PUT', hubRoute(HUB, `/groups/closing/connections/${c.id}`));
        assert.equal(joined.status, 200, 'each joins the group');
    }
    await sleep(300);

    const group = await push(B, 'POST', hubRoute(HUB, '/groups/closing/:closeConnections'),
        { query: [['excluded', conns[2].id], ['reason', 'group closed']] });
    assert.equal(group.status, 204, `closing a group's connections is 204 (${group.text})`);
    const [first, second] = await Promise.all(closed.slice(0, 2));
    assert.match(String(first?.message), /group closed/, 'the members are told why (on A)');
    assert.match(String(second?.message), /group closed/, 'and on B');
    await sleep(300);
    assert.equal(conns[2].connection.state, 'Connected', 'the excluded member stays');

    const user = await push(A, 'POST', hubRoute(HUB, '/users/push-closer/:closeConnections'));
    assert.equal(user.status, 204, 'closing a user\'s connections is 204');
    await closed[2];
    assert.equal(conns[2].connection.state, 'Disconnected', 'its last connection is closed');
});

test('a user with three connections on two instances gets each message once; excluded get none',
    async () => {
        const token = await devToken('push-three');
        const bystander = await listener(A, { token: await devToken('push-other'),
            methods: ['ReceiveNotification'] });
        const conns = [
            await listener(A, { token, methods: ['ReceiveNotification'] }),
            await listener(B, { token, methods: ['ReceiveNotification'] }),
            await listener(B, { token, methods: ['ReceiveNotification'], protocol: 'messagepack' }),
        ];
        for (const c of [...conns, bystander]) {
            await waitKnown(A, HUB, c.id);
        }
        await waitFor(async () => (await presenceOf(A, HUB, 'push-three')).connections === 3,
            'presence to count three connections');

        const sent = await sendTo(A, HUB, '/users/push-three', 'ReceiveNotification',
            ['to-user', { n: 1 }]);
        assert.equal(sent.status, 202, `sending to a user is 202 (${sent.text})`);
        assert.equal(sent.json.instances, 2, 'both instances hold one of its connections');
        await waitFor(() => conns.every((c) => count(c.got.ReceiveNotification, 'to-user') >= 1),
            'every connection of the user to get it');
        await sleep(300);
        assert.deepEqual(conns.map((c) => count(c.got.ReceiveNotification, 'to-user')), [1, 1, 1],
            'each connection gets it exactly once');
        assert.deepEqual(conns[2].got.ReceiveNotification[0], ['to-user', { n: 1 }],
            'the arguments arrive as sent (MessagePack connection)');
        assert.equal(count(bystander.got.ReceiveNotification, 'to-user'), 0,
            'another user gets nothing');

        await sendTo(B, HUB, '/users/push-three', 'ReceiveNotification', ['some'],
            [conns[0].id, conns[2].id]);
        await sendTo(A, HUB, '', 'ReceiveNotification', ['everyone'], [conns[1].id]);
        await waitFor(() => count(conns[1].got.ReceiveNotification, 'some') === 1
            && count(bystander.got.ReceiveNotification, 'everyone') === 1, 'both sends');
        await sleep(300);
        assert.deepEqual(conns.map((c) => count(c.got.ReceiveNotification, 'some')), [0, 1, 0],
            'the excluded connections of the user get nothing');
        assert.deepEqual(conns.map((c) => count(c.got.ReceiveNotification, 'everyone')),
            [1, 0, 1], 'a broadcast skips the excluded connection, on whichever instance');

        const direct = await push(B, 'POST', `/api/v1/hubs/${HUB}/connections/${conns[0].id}`,
            { body: { target: 'ReceiveNotification', arguments: ['v1'] } });
        assert.equal(direct.status, 202, 'the v1 path sends to one connection');
        await waitFor(() => count(conns[0].got.ReceiveNotification, 'v1') === 1, 'the v1 send');
        const v1Exists = await push(A, 'GET', `/api/v1/hubs/${HUB}/users/push-three`);
        assert.equal(v1Exists.status, 200, 'the v1 existence check is a GET');
        await Promise.all([...conns, bystander].map((c) => c.connection.stop()));
    });

test('an admin-role connection joins administrators and gets ReceiveSystemAlert; a user does not',
    async () => {
        const admin = await listener(B, { token: await devToken('push-admin', { role: 'admin' }),
            methods: ['ReceiveSystemAlert'] });
        const user = await listener(A, { token: await devToken('push-user'),
            methods: ['ReceiveSystemAlert'] });
        await waitKnown(A, HUB, admin.id);
        await waitKnown(A, HUB, user.id);
        await waitFor(async () => (await push(A, 'HEAD', hubRoute(HUB, '/groups/administrators')))
            .status === 200, 'the administrators group to exist');
        await sleep(300);

        const sent = await sendTo(A, HUB, '/groups/administrators', 'ReceiveSystemAlert',
            [{ level: 'critical', text: 'disk full' }]);
        assert.equal(sent.status, 202, 'the alert is accepted');
        await waitFor(() => admin.got.ReceiveSystemAlert.length === 1, 'the admin to get it');
        await sleep(300);
        assert.deepEqual(admin.got.ReceiveSystemAlert,
            [[{ level: 'critical', text: 'disk full' }]], 'the admin gets it once, as sent');
        assert.equal(user.got.ReceiveSystemAlert.length, 0, 'the user-role connection does not');
        await Promise.all([admin.connection.stop(), user.connection.stop()]);
    });

test('OrderHub pushes OrderStatusChanged(orderId, status); client invocations get an error',
    async () => {
        const token = await devToken('push-buyer');
        const buyer = await listener(A, { token, hubPath: ORDERS,
            methods: ['OrderStatusChanged'] });
        await waitKnown(B, 'OrderHub', buyer.id);
        const sent = await sendTo(B, 'orderhub', '/users/push-buyer', 'OrderStatusChanged',
            ['order-42', 'Shipped']);
        assert.equal(sent.status, 202, 'hub names match without regard to case');
        await waitFor(() => buyer.got.OrderStatusChanged.length === 1, 'the status change');
        assert.deepEqual(buyer.got.OrderStatusChanged[0], ['order-42', 'Shipped'],
            'both arguments arrive');

        await assert.rejects(buyer.connection.invoke('OrderStatusChanged', 'x', 'y'),
            /Unknown method 'OrderStatusChanged'/, 'a push hub refuses client invocations');
        const notifications = await connect(B, { token, path: NOTIFICATIONS });
        await assert.rejects(notifications.invoke('Anything'), /only sends/,
            'on every push hub, with a reason');
        await Promise.all([buyer.connection.stop(), notifications.stop()]);
    });

test('signalrctl send, group and presence use the same API through nginx', async () => {
    const token = await devToken('push-ctl');
    const c = await listener(B, { token, methods: ['ReceiveNotification'] });
    await waitKnown(A, HUB, c.id);

    const shown = await signalrctlPush(A, ['presence', '--hub', HUB, '--user', 'push-ctl']);
    assert.equal(shown.code, 0, `signalrctl presence succeeds (${shown.stderr})`);
    assert.deepEqual(JSON.parse(shown.stdout),
        { hub: HUB, user: 'push-ctl', online: true, connections: 1 }, 'and prints the presence');

    const added = await signalrctlPush(A, ['group', 'add', '--hub', HUB, '--group', 'ctl',
        '--connection', c.id]);
    assert.equal(added.code, 0, `signalrctl group add succeeds (${added.stderr})`);
    const sent = await signalrctlPush(A, ['send', '--hub', HUB, '--group', 'ctl',
        '--target', 'ReceiveNotification', '--args', '["from-ctl", 7]']);
    assert.equal(sent.code, 0, `signalrctl send succeeds (${sent.stderr})`);
    await waitFor(() => c.got.ReceiveNotification.length === 1, 'the message from signalrctl');
    assert.deepEqual(c.got.ReceiveNotification[0], ['from-ctl', 7], 'with its arguments');

    const missing = await signalrctlPush(A, ['group', 'check', '--hub', HUB, '--group', 'ctl',
        '--user', 'push-ctl']);
    assert.equal(missing.code, 1, 'group check of a membership that is not there exits 1');
    const unknown = await signalrctlPush(A, ['send', '--hub', 'NoSuchHub', '--target', 'X']);
    assert.equal(unknown.code, 1, 'an error answer exits 1');
    assert.match(unknown.stdout, /NoSuchHub/, 'and prints the error');
    await c.connection.stop();
});
