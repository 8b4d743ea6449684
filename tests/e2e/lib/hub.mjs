// The official SignalR client, as an application would use it against
// the chat hub, plus a collector for the fragments of one Stream call.
import assert from 'node:assert/strict';

import * as signalR from '@microsoft/signalr';
import { MessagePackHubProtocol } from '@microsoft/signalr-protocol-msgpack';

import { createChat, getChat, messagesOf } from './rest.mjs';

export const HUB_PATH = '/api/v1/chats/stream';
export const PROTOCOLS = ['json', 'messagepack'];

const verbose = Boolean(process.env.E2E_VERBOSE);

// Keeps what the client logs, so that a failing test can show it.
export class ClientLog {
    constructor(name) {
        this.name = name;
        this.lines = [];
    }

    log(level, message) {
        if (level < signalR.LogLevel.Information) {
            return;
        }
        const line = `${this.name}: ${signalR.LogLevel[level]}: ${message}`;
        this.lines.push(line);
        if (verbose) {
            process.stderr.write(`${line}\n`);
        }
    }
}

// options: protocol 'json' | 'messagepack'; token (string) or
// tokenFactory; reconnectDelays (array of ms) for withAutomaticReconnect;
// statefulReconnect for withStatefulReconnect; skipNegotiation;
// transport (a signalR.HttpTransportType, or null to let the client
// choose; WebSockets by default); path (the hub location).
export function buildConnection(stack, options = {}) {
    const protocol = options.protocol ?? 'json';
    const tokenFactory = options.tokenFactory ?? (() => options.token);
    const logger = new ClientLog(`client/${protocol}`);
    const transport = options.transport === undefined
        ? signalR.HttpTransportType.WebSockets : options.transport;

    let builder = new signalR.HubConnectionBuilder()
        .withUrl(`${stack.url}${options.path ?? HUB_PATH}`, {
            ...(transport === null ? {} : { transport }),
            skipNegotiation: Boolean(options.skipNegotiation),
            accessTokenFactory: tokenFactory,
            logger,
        })
        .configureLogging(logger);
    if (protocol === 'messagepack') {
        builder = builder.withHubProtocol(new MessagePackHubProtocol());
    }
    if (options.reconnectDelays) {
        builder = builder.withAutomaticReconnect(options.reconnectDelays);
    }
    if (options.statefulReconnect) {
        builder = builder.withStatefulReconnect();
    }

    const connection = builder.build();
    connection.clientLog = logger;
    return connection;
}

export async function connect(stack, options = {}) {
    const connection = buildConnection(stack, options);
    await connection.start();
    return connection;
}

export const NO_CONTEXT = Object.freeze({ lastMessageId: null, lastFragmentId: null });

// the stream context that resumes right after `fragment`
export function contextAfter(fragment) {
    return { lastMessageId: fragment.id, lastFragmentId: fragment.fragmentId };
}

// One Stream("Stream", id, context) call: every fragment received, in
// order, and ways to wait for what a test expects.
export class FragmentStream {
    constructor(connection, conversationId, context = NO_CONTEXT) {
        this.fragments = [];
        this.error = null;
        this.completed = false;
        this.waiters = new Set();
        this.subscription = connection.stream('Stream', conversationId, context).subscribe({
            next: (fragment) => {
                this.fragments.push(fragment);
                this.notify();
            },
            error: (err) => {
                this.error = err ?? new Error('stream failed without a reason');
                this.notify();
            },
            complete: () => {
                this.completed = true;
                this.notify();
            },
        });
    }

    notify() {
        for (const waiter of this.waiters) {
            waiter();
        }
    }

    // Resolves with the fragments once predicate(fragments) holds. Rejects
    // when the stream errors or completes first, or after timeoutMs.
    waitFor(predicate, what, timeoutMs = 15000) {
        return new Promise((resolve, reject) => {
            let timer = null;
            const check = () => {
                let failure = null;
                if (predicate(this.fragments)) {
                    resolve(this.fragments);
                } else if (this.error) {
                    failure = new Error(`stream ended with an error before ${what}: `
                        + `${this.error.message} (${this.fragments.length} fragments)`);
                } else if (this.completed) {
                    failure = new Error(`stream completed before ${what} `
                        + `(${this.fragments.length} fragments)`);
                } else {
                    return;
                }
                clearTimeout(timer);
                this.waiters.delete(check);
                if (failure) {
                    reject(failure);
                }
            };
            timer = setTimeout(() => {
                this.waiters.delete(check);
                reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what} `
                    + `(${this.fragments.length} fragments so far: `
                    + `${JSON.stringify(this.fragments.slice(-3))})`));
            }, timeoutMs);
            this.waiters.add(check);
            check();
        });
    }

    // Resolves with the error the stream ends with; rejects if it does not.
    waitForError(timeoutMs = 15000) {
        return new Promise((resolve, reject) => {
            const timer = setTimeout(() => {
                this.waiters.delete(check);
                reject(new Error(`stream did not fail within ${timeoutMs} ms `
                    + `(${this.fragments.length} fragments)`));
            }, timeoutMs);
            const check = () => {
                if (this.error || this.completed) {
                    clearTimeout(timer);
                    this.waiters.delete(check);
                    if (this.error) {
                        resolve(this.error);
                    } else {
                        reject(new Error('stream completed instead of failing'));
                    }
                }
            };
            this.waiters.add(check);
            check();
        });
    }

    // the final fragment of a message other than `exceptMessageId`
    waitForFinal(exceptMessageId, timeoutMs = 15000) {
        return this.waitFor(
            (fragments) => fragments.some((f) => f.isFinal && f.id !== exceptMessageId),
            'a final assistant fragment', timeoutMs);
    }

    // stops following: the client sends CancelInvocation
    dispose() {
        this.subscription.dispose();
    }
}

export function textOf(fragments, messageId) {
    return fragments.filter((f) => f.id === messageId).map((f) => f.text).join('');
}

// fragments of messages other than the given ones, in order
export function fragmentsExcept(fragments, ...messageIds) {
    return fragments.filter((f) => !messageIds.includes(f.id));
}


// A reply is over with its final fragment. The user's turn is the first
// fragment of a new chat (its echo); the rest belongs to the reply.
export function replyFinished(fragments) {
    return fragments.length > 0
        && fragments.some((f) => f.isFinal && f.id !== fragments[0].id);
}

// Each of connections ({ token, connection }) starts a chat, all at once,
// and must stream the whole reply: the text the REST API holds after it.
export async function streamWholeReplies(stack, connections, what) {
    await Promise.all(connections.map(async ({ token, connection }, i) => {
        const id = await createChat(stack, token, `${what} ${i}`);
        const stream = new FragmentStream(connection, id);
        const fragments = await stream.waitFor(replyFinished, `reply ${i}`, 30000);
        const [reply] = messagesOf(await getChat(stack, token, id), 'assistant');
        assert.equal(textOf(fragments, reply.id), reply.text, `connection ${i}: whole reply`);
        stream.dispose();
    }));
}
