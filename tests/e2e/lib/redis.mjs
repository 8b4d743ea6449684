// A redis-server shared by several stacks (startStack({ redisUrl })), the
// way several hosts share one Redis. It keeps its data across a restart
// (append-only file, fsync on every write), as a production Redis would,
// so that a test can restart it mid-reply and check that nothing is lost.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { freePort } from './stack.mjs';

const verbose = Boolean(process.env.E2E_VERBOSE);
const running = new Set();

process.on('exit', () => {
    for (const child of running) {
        try {
            child.kill('SIGKILL');
        } catch {
            // already gone
        }
    }
});

// Sends one inline command; resolves with the first reply line.
export function redisCommand(port, command, timeoutMs = 1000) {
    return new Promise((resolve, reject) => {
        const socket = net.connect(port, '127.0.0.1');
        let data = '';
        const timer = setTimeout(() => {
            socket.destroy();
            reject(new Error(`redis on port ${port} did not answer ${command}`));
        }, timeoutMs);
        socket.on('connect', () => socket.write(`${command}\r\n`));
        socket.on('data', (chunk) => {
            data += chunk;
            if (data.includes('\r\n')) {
                clearTimeout(timer);
                socket.end();
                resolve(data.split('\r\n')[0]);
            }
        });
        socket.on('error', (err) => {
            clearTimeout(timer);
            reject(err);
        });
    });
}

export class RedisServer {
    constructor(port, dir) {
        this.port = port;
        this.dir = dir;
        this.url = `redis://127.0.0.1:${port}`;
        this.child = null;
    }

    // Starts redis-server on this.port and waits for PONG.
    async start() {
        const child = spawn('redis-server', ['--bind', '127.0.0.1', '--port', String(this.port),
            '--dir', this.dir, '--appendonly', 'yes', '--appendfsync', 'always',
            '--save', '', '--daemonize', 'no', '--loglevel', 'warning'],
        { stdio: ['ignore', verbose ? 'inherit' : 'ignore', verbose ? 'inherit' : 'ignore'] });
        this.child = child;
        running.add(child);
        child.on('exit', () => running.delete(child));

        const deadline = Date.now() + 10000;
        while (Date.now() < deadline) {
            if (child.exitCode !== null) {
                throw new Error(`redis-server on port ${this.port} exited at start`);
            }
            try {
                if (await redisCommand(this.port, 'PING') === '+PONG') {
                    return;
                }
            } catch {
                // not listening yet
            }
            await sleep(50);
        }
        throw new Error(`redis-server on port ${this.port} did not answer PING in 10 s`);
    }

    // Stops it; signal TERM is a clean shutdown (the append-only file is
    // complete), KILL a crash.
    async stop(signal = 'SIGTERM') {
        const child = this.child;
        if (!child || child.exitCode !== null || child.signalCode !== null) {
            return;
        }
        const exited = once(child, 'exit');
        child.kill(signal);
        await exited;
        this.child = null;
    }

    async restart(downMs = 0) {
        await this.stop();
        if (downMs > 0) {
            await sleep(downMs);
        }
        await this.start();
    }

    async destroy() {
        await this.stop();
        await rm(this.dir, { recursive: true, force: true });
    }
}

// A redis-server on a free port, or (start: false) only the port and
// directory, for a test that starts the stacks before Redis.
export async function startRedis({ start = true } = {}) {
    const port = await freePort();
    const dir = await mkdtemp(path.join(os.tmpdir(), 'signalr-e2e-redis-'));
    const server = new RedisServer(port, dir);
    if (start) {
        await server.start();
    }
    return server;
}
