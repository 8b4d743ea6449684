// Starts a whole stack (redis-server, signalrd, nginx with the module)
// through conf/dev/run-stack, the same script `make run` uses, on a free
// loopback port in a fresh temporary directory.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, rmSync } from 'node:fs';
import { mkdtemp, readFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { buildDir, moduleSo, requireBuilt, runStack, signalrd } from './paths.mjs';

const verbose = Boolean(process.env.E2E_VERBOSE);
const keep = Boolean(process.env.E2E_KEEP);
const running = new Set();
const created = [];

// A stack left behind by a crashing test file would hold its port: kill
// what is left of every stack's process group when this process exits.
// The state directories go too when every test passed; otherwise they
// stay, with the end of each stack's log printed to find them by.
process.on('exit', (code) => {
    for (const child of running) {
        try {
            process.kill(-child.pid, 'SIGKILL');
        } catch {
            // already gone
        }
    }
    const failed = code !== 0 || (process.exitCode ?? 0) !== 0;
    for (const stack of created) {
        if (failed || keep) {
            process.stderr.write(`\n---- stack ${stack.url}, files in ${stack.stateDir}; `
                + `its log ends with:\n${stack.logTail(40)}\n----\n`);
        } else {
            rmSync(stack.stateDir, { recursive: true, force: true });
        }
    }
});

// Asks the kernel for a free loopback port. Another process may take it
// before nginx binds it; nginx then fails to start and the test says so.
export async function freePort() {
    const server = net.createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address();
    server.close();
    await once(server, 'close');
    return port;
}

// Settings given to the daemon through its environment, on top of
// run-stack's configuration file. A model endpoint in the caller's
// environment must not turn the deterministic demo provider off.
function stackEnvironment(daemonEnv) {
    const env = { ...process.env };
    for (const name of Object.keys(env)) {
        if (name.startsWith('AI_') || name.startsWith('SIGNALRD_') || name === 'REDIS_URL') {
            delete env[name];
        }
    }
    return { ...env, ...daemonEnv };
}

export class Stack {
    constructor({ port, stateDir, child, logLines, logFile }) {
        this.port = port;
        this.url = `http://127.0.0.1:${port}`;
        this.stateDir = stateDir;
        this.child = child;
        this.logLines = logLines;
        this.exited = once(child, 'exit').then(([code, signal]) => ({ code, signal }));
        // 'close' comes once the output pipes are drained too
        this.closed = once(child, 'close');
        this.logFile = logFile;
    }

    // the process ids run-stack keeps in the state directory
    async pidOf(name) {
        const text = await readFile(path.join(this.stateDir, `${name}.pid`), 'utf8');
        return Number.parseInt(text, 10);
    }

    async accessLog() {
        return readFile(path.join(this.stateDir, 'access.log'), 'utf8').catch(() => '');
    }

    logTail(lines = 60) {
        return this.logLines.slice(-lines).join('\n');
    }

    async health() {
        try {
            const response = await fetch(`${this.url}/healthz`, {
                signal: AbortSignal.timeout(2000),
            });
            return response.status;
        } catch {
            return 0;
        }
    }

    // Resolves once /healthz answers 200 through nginx; rejects when the
    // stack exits first or the time runs out, with the stack's log.
    async waitHealthy(timeoutMs = 30000) {
        const deadline = Date.now() + timeoutMs;
        let status = 0;
        let exited = null;
        this.exited.then((result) => { exited = result; });

        while (Date.now() < deadline) {
            if (exited) {
                throw new Error(`stack exited (${JSON.stringify(exited)}) before it was healthy:\n`
                    + this.logTail());
            }
            status = await this.health();
            if (status === 200) {
                return;
            }
            await sleep(100);
        }
        throw new Error(`GET /healthz did not answer 200 in ${timeoutMs} ms (last ${status}):\n`
            + this.logTail());
    }

    // Resolves once nginx answers /healthz at all (any status).
    async waitListening(timeoutMs = 30000) {
        const deadline = Date.now() + timeoutMs;
        while (Date.now() < deadline) {
            if (this.child.exitCode !== null) {
                throw new Error(`stack exited before it listened:\n${this.logTail()}`);
            }
            const status = await this.health();
            if (status !== 0 && status !== 502) {
                return;
            }
            await sleep(100);
        }
        throw new Error(`the stack did not answer in ${timeoutMs} ms:\n${this.logTail()}`);
    }

    // stop(), and what a clean stop means: run-stack exits 0 and the log
    // has no sanitizer report and no alert. name says which stack.
    async stopCleanly(name = 'the stack') {
        const result = await this.stop();
        assert.deepEqual(result, { code: 0, signal: null },
            `${name} exits 0\n${this.logTail()}`);
        assert.doesNotMatch(this.logTail(2000),
            /AddressSanitizer|LeakSanitizer|runtime error:|\[alert\]|\[emerg\]/,
            `${name} logged no sanitizer report and no alert`);
    }

    // TERM to run-stack, which stops nginx, signalrd and redis and waits
    // for them; KILL to the whole group if that takes too long.
    async stop() {
        if (this.child.exitCode === null && this.child.signalCode === null) {
            this.child.kill('SIGTERM');
        }
        const timer = setTimeout(() => {
            try {
                process.kill(-this.child.pid, 'SIGKILL');
            } catch {
                // already gone
            }
        }, 30000);
        const result = await this.exited;
        clearTimeout(timer);
        running.delete(this.child);
        await this.closed;
        if (!this.logFile.writableEnded) {
            await new Promise((resolve) => this.logFile.end(resolve));
        }
        await this.assertNoTokensLogged();
        return result;
    }

    // Every log the stack wrote (nginx's error log and the daemon's, in
    // stack.log; the access log) must be free of bearer tokens: a JWT's
    // header and payload are base64url JSON objects, so both start "eyJ".
    async assertNoTokensLogged() {
        const jwt = /eyJ[A-Za-z0-9_-]{6,}\.eyJ[A-Za-z0-9_-]{6,}/;
        for (const name of ['stack.log', 'access.log']) {
            const text = await readFile(path.join(this.stateDir, name), 'utf8').catch(() => '');
            const line = text.split('\n').find((l) => jwt.test(l));
            if (line !== undefined) {
                const shown = line.replace(/(eyJ[A-Za-z0-9_-]{6})[A-Za-z0-9_.-]*/g, '$1...');
                throw new Error(`${name} of the stack at ${this.url} holds a bearer token: `
                    + shown);
            }
        }
    }
}

// options.env: daemon settings (SIGNALRD_DEMO_TOKEN_RATE, ...);
// options.restartDaemon: run-stack starts signalrd again when it dies;
// options.redisUrl: join that Redis instead of a private one;
// options.waitHealthy: false returns as soon as the stack runs, healthy or
// not (Redis may be down on purpose);
// options.nginxConf: an nginx template with run-stack's placeholders, to
// run instead of the dev stack's.
export async function startStack(options = {}) {
    requireBuilt(moduleSo, signalrd, runStack);

    const port = await freePort();
    const stateDir = await mkdtemp(path.join(os.tmpdir(), 'signalr-e2e-'));
    const args = [runStack, '--build', buildDir, '--port', String(port),
        '--state-dir', stateDir, '--module', moduleSo, '--signalrd', signalrd,
        '--stop-on-eof'];
    if (options.restartDaemon) {
        args.push('--restart-daemon');
    }
    if (options.redisUrl) {
        args.push('--redis-url', options.redisUrl);
    }
    if (options.nginxConf) {
        args.push('--nginx-conf', options.nginxConf);
    }

    const child = spawn('bash', args, {
        env: stackEnvironment(options.env ?? {}),
        stdio: ['pipe', 'pipe', 'pipe'],
        detached: true,
    });
    running.add(child);

    const logLines = [];
    const logFile = createWriteStream(path.join(stateDir, 'stack.log'));
    for (const stream of [child.stdout, child.stderr]) {
        stream.setEncoding('utf8');
        stream.on('data', (chunk) => {
            logFile.write(chunk);
            logLines.push(...chunk.split('\n').filter((line) => line !== ''));
            if (logLines.length > 2000) {
                logLines.splice(0, logLines.length - 2000);
            }
            if (verbose) {
                process.stderr.write(chunk);
            }
        });
    }

    const stack = new Stack({ port, stateDir, child, logLines, logFile });
    created.push(stack);
    try {
        if (options.waitHealthy === false) {
            await stack.waitListening();
        } else {
            await stack.waitHealthy();
        }
    } catch (err) {
        await stack.stop();
        throw err;
    }
    return stack;
}
