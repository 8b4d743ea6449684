// The connection registry split between nginx's workers (docs/operations.md,
// "Shared memory zones"): a connection negotiated by one worker connects
// through any other, a worker whose part of the zone is full hands out
// tokens of another part, a full zone answers 503 until room comes back,
// and the connections of a worker that was killed give their room back.
//
// The stacks here run three workers and a registry zone of 256k, which
// holds about a thousand negotiated connections.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { HUB_PATH, connect, streamWholeReplies } from './lib/hub.mjs';
import { sourceDir } from './lib/paths.mjs';
import { upgrade } from './lib/rawws.mjs';
import { startStack } from './lib/stack.mjs';
import { devToken } from './lib/tokens.mjs';

const PUSH_HUB = '/hubs/notifications';
const WORKERS = 3;

// the dev configuration with three workers and a small registry zone; the
// push hub keeps a negotiated connection for five minutes, longer than
// any test here, so that only the registry's own cleanup makes room
async function startZonesStack() {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'signalr-zones-'));
    let conf = await readFile(path.join(sourceDir, 'conf/dev/nginx.conf.in'), 'utf8');
    const edits = [
        [/^worker_processes \d+;$/m, `worker_processes ${WORKERS};`],
        [/signalr_registry_zone \S+;/, 'signalr_registry_zone 256k;'],
        [/signalr_hub NotificationHub;/,
            'signalr_hub NotificationHub;\n            signalr_client_timeout 5m;'],
    ];
    for (const [pattern, replacement] of edits) {
        assert.match(conf, pattern, `the dev configuration has ${pattern}`);
        conf = conf.replace(pattern, replacement);
    }
    const file = path.join(dir, 'nginx.conf.in');
    await writeFile(file, conf);
    return startStack({ nginxConf: file });
}

// One negotiate of the push hub over the caller's keep-alive connection
// (fetch reuses it, so sequential calls stay on one worker).
async function negotiate(stack, jwt) {
    const response = await fetch(`${stack.url}${PUSH_HUB}/negotiate?negotiateVersion=1`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${jwt}` },
        signal: AbortSignal.timeout(10000),
    });
    const body = await response.text();
    return { status: response.status, json: response.status === 200 ? JSON.parse(body) : body };
}

// Negotiates until the zone is full: the tokens handed out, and the 503.
async function fill(stack, jwt, limit = 20000) {
    const tokens = [];
    for (let i = 0; i < limit; i++) {
        const answer = await negotiate(stack, jwt);
        if (answer.status !== 200) {
            return { tokens, refusal: answer };
        }
        tokens.push(answer.json.connectionToken);
    }
    throw new Error(`${limit} negotiates and the registry zone is not full`);
}

// A WebSocket of the push hub with a negotiated token, handshake done
async function attach(stack, jwt, token) {
    const ws = await upgrade(stack.port, `${PUSH_HUB}?id=${encodeURIComponent(token)}`
        + `&access_token=${encodeURIComponent(jwt)}`);
    assert.equal(ws.status, 101, `the WebSocket of a negotiated token answers 101 (got `
        + `${ws.status}: ${ws.body})`);
    assert.deepEqual(await ws.raw.handshake('json'), {}, 'the handshake is accepted');
    return ws.raw;
}

// the worker of each request of the access log whose path starts with prefix
async function workersByConnection(stack, prefix) {
    const workers = new Map();
    for (const line of (await stack.accessLog()).split('\n')) {
        const conn = /conn=(\S+)/.exec(line)?.[1];
        const pid = /pid=(\d+)/.exec(line)?.[1];
        if (conn && conn !== '-' && pid && line.includes(`"GET ${prefix}`)) {
            workers.set(conn, Number(pid));
        }
        if (conn && conn !== '-' && pid && line.includes(`"POST ${prefix}/negotiate`)) {
            workers.set(`negotiate:${conn}`, Number(pid));
        }
    }
    return workers;
}

async function stopStack(stack) {
    const result = await stack.stop();
    assert.deepEqual(result, { code: 0, signal: null }, `run-stack exits 0\n${stack.logTail()}`);
}

test('connections negotiated by one worker work through another', async () => {
    const stack = await startZonesStack();
    try {
        const count = 12;
        const connections = await Promise.all(Array.from({ length: count }, async (_, i) => {
            const token = await devToken(`zones-cross-${i}`);
            return { token, connection: await connect(stack, { token }) };
        }));
        await streamWholeReplies(stack, connections, 'zones');
        await Promise.all(connections.map(({ connection }) => connection.stop()));

        const workers = await workersByConnection(stack, HUB_PATH);
        const ids = [...workers.keys()].filter((k) => !k.startsWith('negotiate:'));
        assert.equal(ids.length, count, 'every WebSocket is in the access log');
        const crossed = ids.filter((id) => workers.has(`negotiate:${id}`)
            && workers.get(`negotiate:${id}`) !== workers.get(id));
        assert.ok(crossed.length > 0,
            `some connection was negotiated by another worker than its WebSocket's `
            + `(${crossed.length} of ${count})`);
        assert.ok(new Set(ids.map((id) => workers.get(id))).size >= 2,
            'the WebSockets met several workers');
    } finally {
        await stopStack(stack);
    }
});

test('a full part of the zone hands out tokens of another, a full zone answers 503',
    async () => {
        const stack = await startZonesStack();
        try {
            const jwt = await devToken('zones-fill');
            const { tokens, refusal } = await fill(stack, jwt);
            assert.equal(refusal.status, 503, `a full registry zone answers 503 (${refusal.json})`);
            assert.match(refusal.json, /too many connections/, 'the problem says why');
            assert.ok(tokens.length > 500, `the zone held ${tokens.length} connections`);

            // one keep-alive connection, one worker: its tokens begin with
            // its own part's character until that part is full
            const firsts = [...new Set(tokens.map((t) => t[0]))];
            assert.equal(firsts.length, WORKERS,
                `the tokens of one worker name every part once its own is full (${firsts})`);
            assert.equal(tokens[0][0], tokens[Math.floor(tokens.length / 4)][0],
                'the first quarter of the tokens all name the worker\'s own part');
            assert.equal(new Set(tokens).size, tokens.length, 'every token is new');

            // a token of each part connects, though the zone is full
            const raws = [];
            for (const first of firsts) {
                const token = tokens.findLast((t) => t[0] === first);
                raws.push(await attach(stack, jwt, token));
            }
            assert.equal((await negotiate(stack, jwt)).status, 503, 'the zone is still full');

            // a closed connection gives its room back
            for (const raw of raws) {
                raw.close();
            }
            let status = 0;
            for (let i = 0; i < 50 && status !== 200; i++) {
                await sleep(100);
                status = (await negotiate(stack, jwt)).status;
            }
            assert.equal(status, 200, 'a negotiate succeeds once connections closed');
        } finally {
            await stopStack(stack);
        }
    });

test('the connections of a killed worker give their room back', async () => {
    const stack = await startZonesStack();
    const clients = [];
    try {
        const count = 9;
        for (let i = 0; i < count; i++) {
            clients.push(await connect(stack, { token: await devToken(`zones-dead-${i}`),
                path: PUSH_HUB }));
        }
        const workers = await workersByConnection(stack, PUSH_HUB);
        const held = new Map();
        for (const [conn, pid] of workers) {
            if (!conn.startsWith('negotiate:')) {
                held.set(pid, (held.get(pid) ?? 0) + 1);
            }
        }
        const [victim, victimHeld] = [...held].sort((a, b) => b[1] - a[1])[0];
        assert.ok(victimHeld >= 1, 'a worker holds connections');

        const jwt = await devToken('zones-dead-fill');
        const { refusal } = await fill(stack, jwt);
        assert.equal(refusal.status, 503, 'the zone is full');
        assert.equal((await negotiate(stack, jwt)).status, 503, 'and stays full');

        process.kill(victim, 'SIGKILL');

        // nothing else frees room: the negotiated connections outlive the
        // test and the other clients stay connected
        // (the keep-alive connection may have been the killed worker's)
        let freed = 0;
        for (let i = 0; i < 300 && freed < victimHeld; i++) {
            const answer = await negotiate(stack, jwt).catch(() => ({ status: 0 }));
            if (answer.status === 200) {
                freed++;
            } else {
                await sleep(20);
            }
        }
        assert.equal(freed, victimHeld,
            `the ${victimHeld} connections of the killed worker gave their room back`);
        assert.equal((await negotiate(stack, jwt)).status, 503,
            'and no more than theirs came free');
    } finally {
        await Promise.all(clients.map((c) => c.stop().catch(() => {})));
        await stopStack(stack);
    }
});
