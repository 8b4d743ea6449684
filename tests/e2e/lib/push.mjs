// The push API (docs/push-api.md) as a business service calls it: HTTP
// through nginx, each request with an access-key token whose audience is
// the request URL without its query, signed HS256 here with node:crypto
// the way Azure SignalR Service's SDKs sign it, so that the daemon's
// verifier is checked against tokens the project did not make.
import { execFile } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

import { buildConnection } from './hub.mjs';
import { requireBuilt, signalrctl, sourceDir } from './paths.mjs';
import { readResponse } from './rest.mjs';
import { waitFor } from './wait.mjs';

export { waitFor };

const run = promisify(execFile);

export const ACCESS_KEY_FILE = path.join(sourceDir, 'conf/dev/access-dev.key');
export const NOTIFICATIONS = '/hubs/notifications';
export const ORDERS = '/hubs/orders';

export function accessKey() {
    return readFileSync(ACCESS_KEY_FILE, 'utf8').replace(/\r?\n$/, '');
}

const base64url = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');

// claims override or add to { aud, iat, nbf, exp }; key is the HMAC secret.
export function accessToken(audience, { key = accessKey(), claims = {}, ttl = 300 } = {}) {
    const now = Math.floor(Date.now() / 1000);
    const header = base64url({ alg: 'HS256', typ: 'JWT' });
    const payload = base64url({ aud: audience, iat: now, nbf: now, exp: now + ttl, ...claims });
    const signature = createHmac('sha256', key).update(`${header}.${payload}`)
        .digest('base64url');
    return `${header}.${payload}.${signature}`;
}

// One request: route is the path (encoded as sent), query an object or
// array of [name, value]; token: a token, null for none, undefined for
// a good one. Returns { status, json, text, headers }.
export async function push(stack, method, route, { body, query, token, tokenOptions } = {}) {
    const params = new URLSearchParams(query ?? []);
    if (!params.has('api-version')) {
        params.set('api-version', '2022-06-01');
    }
    const url = `${stack.url}${route}`;
    const headers = {};
    const bearer = token === undefined ? accessToken(url, tokenOptions) : token;
    if (bearer !== null) {
        headers.Authorization = `Bearer ${bearer}`;
    }
    let payload;
    if (body !== undefined) {
        headers['Content-Type'] = 'application/json';
        payload = typeof body === 'string' ? body : JSON.stringify(body);
    }
    const response = await fetch(`${url}?${params}`, {
        method, headers, body: payload, signal: AbortSignal.timeout(5000),
    });
    return readResponse(response);
}

export const hubRoute = (hub, rest = '') => `/api/hubs/${encodeURIComponent(hub)}${rest}`;

// POST .../:send; asserts nothing, returns the answer.
export function sendTo(stack, hub, scope, target, args, excluded = []) {
    return push(stack, 'POST', hubRoute(hub, `${scope}/:send`), {
        body: { target, arguments: args },
        query: excluded.map((id) => ['excluded', id]),
    });
}

// A connection to a push hub, recording every call of the given methods.
export async function listener(stack, { token, hubPath = NOTIFICATIONS, methods, protocol }) {
    const connection = buildConnection(stack, { token, path: hubPath, protocol });
    const got = Object.fromEntries(methods.map((m) => [m, []]));
    for (const method of methods) {
        connection.on(method, (...args) => got[method].push(args));
    }
    await connection.start();
    return { connection, got, id: connection.connectionId };
}

// GET .../presence, as JSON
export async function presenceOf(stack, hub, user) {
    const route = hubRoute(hub, user === undefined ? '/presence'
        : `/users/${encodeURIComponent(user)}/presence`);
    const response = await push(stack, 'GET', route);
    if (response.status !== 200) {
        throw new Error(`GET ${route} answered ${response.status}: ${response.text}`);
    }
    return response.json;
}

// Waits until the connection is known to the push API (its OPEN reached a daemon).
export function waitKnown(stack, hub, id) {
    return waitFor(async () => (await push(stack, 'HEAD',
        hubRoute(hub, `/connections/${encodeURIComponent(id)}`))).status === 200,
    `connection ${id} to exist`);
}

// signalrctl ARGS... against the stack; { code, stdout, stderr }
export async function signalrctlPush(stack, args) {
    requireBuilt(signalrctl);
    try {
        const { stdout, stderr } = await run(signalrctl,
            [...args, '--url', stack.url, '--access-key', ACCESS_KEY_FILE], { timeout: 10000 });
        return { code: 0, stdout, stderr };
    } catch (err) {
        return { code: err.code, stdout: err.stdout, stderr: err.stderr };
    }
}
