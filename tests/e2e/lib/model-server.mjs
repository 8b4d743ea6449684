// A local OpenAI-compatible streaming server for the tests: it answers
// POST /v1/chat/completions with Server-Sent Events as the real servers
// do, records every request (headers, body, when its connection closed),
// and plays what a test scripted for a prompt: tokens with delays, HTTP
// errors, a cut in the middle, a malformed event, or silence.
import http from 'node:http';
import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// The default answer to a prompt nobody scripted: `tokens` tokens derived
// from the prompt, so that a test can compute the expected text.
export function defaultTokens(prompt, count = 8) {
    const words = prompt.split(/\s+/).filter(Boolean);
    return Array.from({ length: count }, (_, i) => `${words[i % words.length] ?? 'x'}#${i} `);
}

function chunk(model, content, finishReason = null) {
    return {
        id: 'chatcmpl-test',
        object: 'chat.completion.chunk',
        created: Math.floor(Date.now() / 1000),
        model,
        choices: [{
            index: 0,
            delta: content === null ? {} : { content },
            finish_reason: finishReason,
        }],
    };
}

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

// One attempt's script (all fields optional):
//   status, body, headers  an HTTP error answer instead of a stream
//   tokens                 the content deltas (default: defaultTokens)
//   firstDelayMs, delayMs  before the first token, between tokens
//   gate                   a promise the stream waits for before it starts
//   forever                after the tokens, keep sending one every delayMs
//   silent                 send headers, then nothing, until the client goes
//   cutAfter               destroy the connection after that many tokens
//   malformedAfter         send a non-JSON event after that many tokens
//   noDone                 end with finish_reason but without [DONE]
//   count                  how many default tokens (8)
//   split                  write each event in pieces of that many bytes
async function play(request, response, script, record) {
    if (script.status) {
        response.writeHead(script.status, { 'Content-Type': 'application/json',
            ...(script.headers ?? {}) });
        response.end(JSON.stringify(script.body ?? { error: { message: `status ${script.status}` } }));
        return;
    }
    response.writeHead(200, {
        'Content-Type': 'text/event-stream',
        'Cache-Control': 'no-cache',
        Connection: 'keep-alive',
    });
    response.flushHeaders();
    if (script.silent) {
        return;
    }

    const model = record.body?.model ?? 'test';
    const tokens = script.tokens ?? defaultTokens(record.prompt, script.count);
    const write = async (text) => {
        if (record.closedAt !== null) {
            return false;
        }
        if (!script.split) {
            response.write(text);
            return true;
        }
        for (let i = 0; i < text.length; i += script.split) {
            response.write(text.slice(i, i + script.split));
            await sleep(1);
        }
        return true;
    };
    const event = (data) => write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);

    await script.gate;
    await sleep(script.firstDelayMs ?? 0);
    await write(': keep-alive comment\n\n');
    await event(chunk(model, null));   // a role-only first chunk, as OpenAI sends
    for (let i = 0; script.forever || i < tokens.length; i++) {
        if (i === script.cutAfter) {
            response.socket?.destroy();
            return;
        }
        if (i === script.malformedAfter) {
            await event('{"choices": [ this is not json');
        }
        const token = tokens[i % tokens.length];
        if (!(await event(chunk(model, token)))) {
            return;
        }
        record.sent.push(token);
        if (i + 1 < tokens.length || script.forever) {
            await sleep(script.delayMs ?? 5);
        }
    }
    await event(chunk(model, null, 'stop'));
    if (!script.noDone) {
        await event('[DONE]');
    }
    response.end();
}

export class ModelServer {
    // defaultScript: what a prompt nobody scripted gets; keep: whether to
    // record requests (a long benchmark run would pile them up)
    constructor({ defaultScript = {}, keep = true } = {}) {
        this.defaultScript = defaultScript;
        this.keep = keep;
        this.requests = [];
        this.scripts = new Map();
        this.server = http.createServer((request, response) => {
            this.handle(request, response).catch((err) => {
                response.destroy(err);
            });
        });
        this.server.keepAliveTimeout = 30000;
        this.server.headersTimeout = 30000;
    }

    async start(port = 0) {
        this.server.listen(port, '127.0.0.1');
        await once(this.server, 'listening');
        this.port = this.server.address().port;
        this.baseUrl = `http://127.0.0.1:${this.port}/v1`;
        return this;
    }

    // Scripts the answers to the request whose last user message is
    // prompt: attempts[0] for the first request, attempts[1] for a retry...
    // (the last one repeats).
    script(prompt, ...attempts) {
        this.scripts.set(prompt, attempts);
    }

    requestsFor(prompt) {
        return this.requests.filter((r) => r.prompt === prompt);
    }

    async handle(request, response) {
        const parts = [];
        for await (const part of request) {
            parts.push(part);
        }
        const text = Buffer.concat(parts).toString('utf8');
        let body = null;
        try {
            body = JSON.parse(text);
        } catch {
            body = null;
        }
        const messages = Array.isArray(body?.messages) ? body.messages : [];
        const prompt = messages.filter((m) => m.role === 'user').at(-1)?.content ?? '';
        const record = {
            method: request.method,
            path: request.url,
            headers: request.headers,
            body,
            prompt,
            receivedAt: performance.now(),
            closedAt: null,
            sent: [],
        };
        if (this.keep) {
            this.requests.push(record);
        }
        // 'close' on the response: the answer ended or the client went away
        response.on('close', () => { record.closedAt = performance.now(); });

        if (request.method !== 'POST' || request.url !== '/v1/chat/completions') {
            response.writeHead(404, { 'Content-Type': 'application/json' });
            response.end('{"error":{"message":"not found"}}');
            return;
        }
        const attempts = this.scripts.get(prompt) ?? [this.defaultScript];
        const index = Math.max(0, this.requestsFor(prompt).length - 1);
        await play(request, response, attempts[Math.min(index, attempts.length - 1)], record);
    }

    async stop() {
        this.server.closeAllConnections();
        this.server.close();
        await once(this.server, 'close').catch(() => {});
    }
}

export async function startModelServer() {
    return new ModelServer().start();
}

// Run on its own, for trying a stack by hand: every prompt gets --tokens
// tokens, --delay-ms apart, the first after --first-delay-ms. Beyond a few
// hundred streams it falls behind its own schedule; the provider benchmark
// plays the same stream from bench/provider/model_server.cpp.
//   node tests/e2e/lib/model-server.mjs --port 18900 --tokens 60 --delay-ms 50
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
    const option = (name, fallback) => {
        const at = process.argv.indexOf(`--${name}`);
        return at > 0 ? Number(process.argv[at + 1]) : fallback;
    };
    const tokens = option('tokens', 60);
    const delayMs = option('delay-ms', 50);
    const firstDelayMs = option('first-delay-ms', delayMs);
    const server = new ModelServer({ keep: false, defaultScript: { delayMs, firstDelayMs } });
    server.defaultScript.count = tokens;
    await server.start(option('port', 0));
    process.stdout.write(`${server.baseUrl}\n`);
    process.on('SIGTERM', () => server.stop().then(() => process.exit(0)));
    process.on('SIGINT', () => server.stop().then(() => process.exit(0)));
}
