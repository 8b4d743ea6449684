// One group message to many WebSockets at once, faster than a worker
// writes them all: every member gets every message exactly once, each
// sender's messages in the order they were sent, JSON and MessagePack
// members alike; a member that stops reading is closed at
// signalr_send_queue_size while the others get everything, whether its
// messages were queued or written at once.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { rawHub, readToClose } from './lib/security.mjs';
import { NOTIFICATIONS, listener, sendTo, waitFor, waitKnown } from './lib/push.mjs';
import { startStack } from './lib/stack.mjs';
import { devToken } from './lib/tokens.mjs';

const HUB = 'NotificationHub';
const GROUP = '/groups/administrators';
const TARGET = 'ReceiveSystemAlert';
// more members than one worker writes in one go (two workers, slices
// of 32), so that the writes of one message span several event-loop turns
const MEMBERS = 240;
const SENDERS = 8;
const PER_SENDER = 25;

let stack;

before(async () => {
    stack = await startStack();
});

after(async () => {
    await stack?.stop();
});

// n members, half of them MessagePack, in batches
async function members(n, prefix) {
    const tokens = await Promise.all(Array.from({ length: 8 },
        (_, i) => devToken(`${prefix}-${i}`, { role: 'admin' })));
    const all = [];
    for (let i = 0; i < n; i += 40) {
        const batch = await Promise.all(Array.from({ length: Math.min(40, n - i) },
            (_, j) => listener(stack, {
                token: tokens[(i + j) % tokens.length],
                methods: [TARGET],
                protocol: (i + j) % 2 ? 'messagepack' : 'json',
            })));
        all.push(...batch);
    }
    await Promise.all(all.map((m) => waitKnown(stack, HUB, m.id)));
    return all;
}

// each sender posts its messages one after the other, all senders at once
async function publish(senders, perSender, payload = '') {
    await Promise.all(Array.from({ length: senders }, async (_, s) => {
        for (let n = 0; n < perSender; n++) {
            const sent = await sendTo(stack, HUB, GROUP, TARGET, [{ s, n, payload }]);
            assert.equal(sent.status, 202, `message ${s}/${n} is accepted (${sent.text})`);
        }
    }));
}

// what a member got: every message once, each sender's in order
function assertComplete(got, label, senders, perSender) {
    const next = new Array(senders).fill(0);
    for (const [{ s, n }] of got) {
        assert.equal(n, next[s], `${label}: sender ${s}'s message ${next[s]} comes next`);
        next[s]++;
    }
    assert.deepEqual(next, new Array(senders).fill(perSender),
        `${label}: every message of every sender, once`);
}

test('a burst to 240 members: all of it, once, each sender in order', async () => {
    const all = await members(MEMBERS, 'fanout');
    const total = SENDERS * PER_SENDER;

    await publish(SENDERS, PER_SENDER);

    await waitFor(() => all.every((m) => m.got[TARGET].length >= total),
        `all ${MEMBERS} members to get ${total} messages`, 30000);
    all.forEach((m, i) => assertComplete(m.got[TARGET], `member ${i}`, SENDERS, PER_SENDER));
    assert.ok(all.every((m) => m.connection.state === 'Connected'), 'and all stay connected');
    await Promise.all(all.map((m) => m.connection.stop()));
});

// A member that stops reading, the others reading on: what the kernel's
// buffers and the 1 MiB send queue hold is more than `count` messages of
// `size` bytes, from 4 senders at once. Messages of 24 KiB are queued by
// the worker before they are written; messages of 6 KiB are written at
// once while the worker is idle, and the first that the member's socket
// takes in part leaves the rest of its bytes in the queue.
async function slowMember(label, size, perSender) {
    const senders = 4;
    const total = senders * perSender;
    // few, so that the one client process reading them all keeps up
    const readers = await members(8, `fanout-readers-${label}`);
    const raw = await rawHub(stack, NOTIFICATIONS, await devToken(`fanout-slow-${label}`,
        { role: 'admin' }));
    const before = (stack.logTail(100000).match(/send queue is full/g) || []).length;
    raw.socket.pause();

    await publish(senders, perSender, 'x'.repeat(size));
    await waitFor(() => (stack.logTail(100000).match(/send queue is full/g) || []).length
        > before, 'the error log to name the full send queue', 20000);

    raw.socket.resume();
    const { close, messages } = await readToClose(raw);
    assert.equal(close.code, 1008, 'the slow member is closed with 1008');
    const closeMessage = messages.find((m) => m.type === 7);
    assert.equal(closeMessage?.error, 'send queue full', 'its Close message says why');
    const alerts = messages.filter((m) => m.type === 1 && m.target === TARGET);
    assert.ok(alerts.length > 0 && alerts.length < total,
        `it got the messages queued before the bound (${alerts.length} of ${total})`);
    const seen = new Array(senders).fill(0);
    for (const { arguments: [{ s, n, payload }] } of alerts) {
        assert.equal(n, seen[s], `the slow member gets sender ${s}'s messages in order`);
        assert.equal(payload.length, size, `message ${s}/${n} is whole`);
        seen[s]++;
    }
    assert.equal(await raw.waitClosed(8000), true, 'its TCP connection ends');

    await waitFor(() => readers.every((m) => m.got[TARGET].length >= total),
        `the reading members to get all ${total} messages`, 30000);
    readers.forEach((m, i) => assertComplete(m.got[TARGET], `reader ${i}`, senders,
        perSender));
    assert.ok(readers.every((m) => m.connection.state === 'Connected'),
        'the reading members stay connected');
    await Promise.all(readers.map((m) => m.connection.stop()));
}

test('a member that stops reading is closed at the send queue bound; the others get all',
    async () => {
        // 240 messages of 24 KiB: 5.6 MiB
        await slowMember('queued', 24 * 1024, 60);
    });

test('the same with messages written at once: the one cut short is kept whole, in order',
    async () => {
        // 1,200 messages of 6 KiB: 7 MiB
        await slowMember('direct', 6 * 1024, 300);
    });

test('the stack stops cleanly, without sanitizer reports or alerts', async () => {
    const stopped = stack;
    stack = null;
    await stopped.stopCleanly();
});
