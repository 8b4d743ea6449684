// A measurement, not a test (docs/performance.md, "Transports"): the
// same chat load over WebSockets, Server-Sent Events and Long Polling,
// with the official client. For each transport, STREAMS connections
// (100 by default), one user and one new chat each, stream a whole
// reply at once; it reports the fragment age (creation, from the UUIDv7
// fragment id, to the client's read) and the CPU time nginx's workers
// and signalrd spent per delivered fragment.
//
//   cd tests/e2e && node bench-transports.mjs     # after a build
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

import * as signalR from '@microsoft/signalr';

import { FragmentStream, connect } from './lib/hub.mjs';
import { createChat } from './lib/rest.mjs';
import { startStack } from './lib/stack.mjs';
import { devToken } from './lib/tokens.mjs';

const STREAMS = Number(process.env.STREAMS ?? 100);
const TOKEN_RATE = Number(process.env.TOKEN_RATE ?? 20);
const REPLY_TOKENS = Number(process.env.REPLY_TOKENS ?? 100);
const TICKS = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());

function cpuMs(pids) {
    let ticks = 0;
    for (const pid of pids) {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        ticks += Number(fields[11]) + Number(fields[12]);
    }
    return (ticks * 1000) / TICKS;
}

function ageMs(fragment, now) {
    return now - Number.parseInt(fragment.fragmentId.replaceAll('-', '').slice(0, 12), 16);
}

function quantile(sorted, q) {
    return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

async function run(stack, name, transport, users) {
    const connections = await Promise.all(users.map((token) =>
        connect(stack, { protocol: 'json', token, transport })));
    const nginxMaster = await stack.pidOf('nginx');
    const workers = execFileSync('pgrep', ['-P', String(nginxMaster)]).toString()
        .trim().split('\n').map(Number);
    const daemon = await stack.pidOf('signalrd');

    const ages = [];
    const before = { nginx: cpuMs(workers), daemon: cpuMs([daemon]) };
    const started = Date.now();
    await Promise.all(connections.map(async (connection, i) => {
        const id = await createChat(stack, users[i], `measure ${name} ${i}`);
        const stream = new FragmentStream(connection, id);
        const seen = new Set();
        const onItem = stream.notify.bind(stream);
        stream.notify = () => {
            const now = Date.now();
            for (const f of stream.fragments) {
                if (!seen.has(f.fragmentId)) {
                    seen.add(f.fragmentId);
                    ages.push(ageMs(f, now));
                }
            }
            onItem();
        };
        await stream.waitFor((fs) => fs.some((f) => f.isFinal && f.id !== fs[0].id),
            'the end of the reply', 120000);
        stream.dispose();
    }));
    const elapsed = Date.now() - started;
    const after = { nginx: cpuMs(workers), daemon: cpuMs([daemon]) };
    await Promise.all(connections.map((c) => c.stop()));

    ages.sort((a, b) => a - b);
    return {
        transport: name,
        fragments: ages.length,
        seconds: (elapsed / 1000).toFixed(1),
        age_p50: quantile(ages, 0.5),
        age_p95: quantile(ages, 0.95),
        age_p99: quantile(ages, 0.99),
        age_max: ages.at(-1),
        nginx_us_per_msg: ((after.nginx - before.nginx) * 1000 / ages.length).toFixed(1),
        daemon_us_per_msg: ((after.daemon - before.daemon) * 1000 / ages.length).toFixed(1),
    };
}

const stack = await startStack({
    env: {
        SIGNALRD_DEMO_TOKEN_RATE: String(TOKEN_RATE),
        SIGNALRD_DEMO_REPLY_TOKENS: String(REPLY_TOKENS),
    },
});
try {
    const results = [];
    const { WebSockets, ServerSentEvents, LongPolling } = signalR.HttpTransportType;
    for (const [name, transport] of [['WebSockets', WebSockets],
        ['ServerSentEvents', ServerSentEvents], ['LongPolling', LongPolling]]) {
        const users = await Promise.all(Array.from({ length: STREAMS },
            (_, i) => devToken(`bench-${name}-${i}`)));
        results.push(await run(stack, name, transport, users));
    }
    console.log(`${STREAMS} streams, ${REPLY_TOKENS} tokens at ${TOKEN_RATE}/s each`);
    console.table(results);
} finally {
    await stack.stop();
}
