// A TCP proxy between the official client and nginx that a test can use
// to break the network: cut() drops every open connection at once, the
// way a phone entering a tunnel or a recycled load balancer connection
// does (or only the client's side of them, so that nginx does not see
// the cut); hold() makes new connections wait, accepted but not forwarded,
// until release(), so that a client stays away for as long as a test
// wants; `target` may be changed to send new connections to another
// instance, as a load balancer would.
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { sourceDir } from './paths.mjs';

class CutProxy {
    constructor(server, targetPort) {
        this.server = server;
        this.port = server.address().port;
        this.url = `http://127.0.0.1:${this.port}`;
        this.target = targetPort;
        this.open = new Set();
        this.stale = new Set();
        this.waiting = [];
        this.holding = false;
        this.accepted = 0;
        this.cuts = 0;
        server.on('connection', (client) => this.accept(client));
    }

    accept(client) {
        this.accepted++;
        client.on('error', () => {});
        // what the client sends while waiting is kept by the paused socket
        client.pause();
        if (this.holding) {
            this.waiting.push(client);
            client.on('close', () => {
                this.waiting = this.waiting.filter((c) => c !== client);
            });
        } else {
            this.forward(client);
        }
    }

    forward(client) {
        const upstream = net.connect(this.target, '127.0.0.1');
        const pair = { client, upstream, keepUpstream: false };
        this.open.add(pair);
        upstream.on('error', () => client.destroy());
        client.on('close', () => {
            if (!pair.keepUpstream) {
                upstream.destroy();
            }
            this.open.delete(pair);
        });
        upstream.on('close', () => {
            client.destroy();
            this.open.delete(pair);
            this.stale.delete(upstream);
        });
        upstream.on('connect', () => {
            client.pipe(upstream);
            upstream.pipe(client);
            client.resume();
        });
    }

    // Drops every open connection without a goodbye: a reset to the
    // client and to nginx alike; with serverSide false, to the client
    // only, and nginx's side stays open and silent (see staleCount).
    cut({ serverSide = true } = {}) {
        this.cuts++;
        const pairs = [...this.open];
        for (const pair of pairs) {
            if (serverSide) {
                pair.upstream.resetAndDestroy();
            } else {
                pair.keepUpstream = true;
                pair.upstream.unpipe();
                pair.upstream.resume();
                this.stale.add(pair.upstream);
            }
            pair.client.resetAndDestroy();
        }
        this.open.clear();
        return pairs.length;
    }

    // nginx's sides of connections cut on the client's side only that
    // nginx has not closed yet
    get staleCount() {
        return this.stale.size;
    }

    // New connections wait from now on.
    hold() {
        this.holding = true;
    }

    // Forwards what waited, and whatever comes next.
    release() {
        this.holding = false;
        const waiting = this.waiting;
        this.waiting = [];
        for (const client of waiting) {
            if (!client.destroyed) {
                this.forward(client);
            }
        }
    }

    get waitingCount() {
        return this.waiting.length;
    }

    async close() {
        this.release();
        this.cut();
        for (const upstream of this.stale) {
            upstream.destroy();
        }
        this.server.close();
        await once(this.server, 'close');
    }
}

// A proxy on a free loopback port in front of 127.0.0.1:targetPort.
export async function startCutProxy(targetPort) {
    const server = net.createServer({ pauseOnConnect: true });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return new CutProxy(server, targetPort);
}

// The dev stack's nginx configuration for tests behind the proxy: its
// listening socket split per worker (reuseport), so that the kernel
// spreads new connections over both workers rather than waking the same
// one, and, when given, other stateful reconnect bounds for the hub.
// Returns the path of a template for startStack({ nginxConf }).
export async function statefulStackConf({ buffer, window } = {}) {
    let text = await readFile(path.join(sourceDir, 'conf/dev/nginx.conf.in'), 'utf8');
    const edits = [
        [/listen 127\.0\.0\.1:@PORT@;/, 'listen 127.0.0.1:@PORT@ reuseport;'],
        [/signalr_stateful_reconnect_buffer \S+;/,
            `signalr_stateful_reconnect_buffer ${buffer ?? 100000};`],
        [/signalr_stateful_reconnect_window \S+;/,
            `signalr_stateful_reconnect_window ${window ?? '30s'};`],
    ];
    for (const [pattern, replacement] of edits) {
        if (!pattern.test(text)) {
            throw new Error(`conf/dev/nginx.conf.in has no line matching ${pattern}`);
        }
        text = text.replace(pattern, replacement);
    }

    const dir = await mkdtemp(path.join(os.tmpdir(), 'signalr-e2e-conf-'));
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'nginx.conf.in');
    await writeFile(file, text);
    return file;
}
