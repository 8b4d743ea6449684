// Group membership lives in Redis: kill -9 the daemon (run-stack starts
// it again) and the connections nginx kept are announced anew; the
// groups the push API gave them, and their users, come back with them.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { hubRoute, listener, push, sendTo, waitFor, waitKnown } from './lib/push.mjs';
import { startStack } from './lib/stack.mjs';
import { devToken } from './lib/tokens.mjs';

const HUB = 'NotificationHub';
let stack;

before(async () => {
    stack = await startStack({ restartDaemon: true });
});

after(async () => {
    await stack?.stop();
});

test('memberships survive a daemon restart', async () => {
    const token = await devToken('restart-member');
    const member = await listener(stack, { token, methods: ['ReceiveNotification'] });
    const other = await listener(stack, { token: await devToken('restart-other'),
        methods: ['ReceiveNotification'] });
    await waitKnown(stack, HUB, member.id);
    const joined = await push(stack, 'PUT',
        hubRoute(HUB, `/groups/survivors/connections/${member.id}`));
    assert.equal(joined.status, 200, 'the connection joins a group');
    const fan = await push(stack, 'PUT', hubRoute(HUB, '/users/restart-member/groups/fans'));
    assert.equal(fan.status, 200, 'its user joins another');

    const oldPid = await stack.pidOf('signalrd');
    process.kill(oldPid, 'SIGKILL');
    await waitFor(async () => (await stack.pidOf('signalrd').catch(() => oldPid)) !== oldPid,
        'run-stack to start signalrd again');
    await stack.waitHealthy();
    await waitFor(async () => (await push(stack, 'HEAD', hubRoute(HUB, '/groups/fans')))
        .status === 200, 'the connection to be announced again, in its groups', 15000);
    assert.equal(member.connection.state, 'Connected', 'the client stayed connected');
    await sleep(300);

    await sendTo(stack, HUB, '/groups/survivors', 'ReceiveNotification', ['survivors']);
    await sendTo(stack, HUB, '/groups/fans', 'ReceiveNotification', ['fans']);
    await waitFor(() => member.got.ReceiveNotification.length === 2, 'both group messages');
    assert.deepEqual(member.got.ReceiveNotification.map((args) => args[0]).sort(),
        ['fans', 'survivors'], 'the member is in both groups again, once each');
    assert.equal(other.got.ReceiveNotification.length, 0, 'the other connection is in neither');
    await Promise.all([member.connection.stop(), other.connection.stop()]);
});
