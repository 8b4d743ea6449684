// Tokens for the tests. Good ones come from signalrctl, as a user of the
// dev stack gets them; the bad ones (wrong key, expired, alg none) are
// built here with node:crypto, so that the verifier in nginx is checked
// against tokens that no part of the project produced.
import { execFile } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';

import { devKeyFile, requireBuilt, signalrctl } from './paths.mjs';

const run = promisify(execFile);

export const DEV_ISSUER = 'nginx-signalr-dev';
export const DEV_AUDIENCE = 'nginx-signalr';

// signalrctl token --sub NAME [--role ROLE] [--ttl SECONDS]
export async function devToken(sub, { role, ttl } = {}) {
    requireBuilt(signalrctl);
    const args = ['token', '--sub', sub, '--key', devKeyFile];
    if (role) {
        args.push('--role', role);
    }
    if (ttl !== undefined) {
        args.push('--ttl', String(ttl));
    }
    const { stdout } = await run(signalrctl, args, { timeout: 10000 });
    const token = stdout.trim();
    if (token.split('.').length !== 3) {
        throw new Error(`signalrctl token printed no JWT: ${JSON.stringify(stdout)}`);
    }
    return token;
}

function base64url(data) {
    return Buffer.from(data).toString('base64url');
}

// the secret as the dev stack reads it: the file less its trailing newline
export function devSecret() {
    return readFileSync(devKeyFile, 'utf8').replace(/\r?\n$/, '');
}

export function devClaims(sub, overrides = {}) {
    const now = Math.floor(Date.now() / 1000);
    return {
        sub,
        role: 'user',
        roles: ['user'],
        scope: 'chatting_read chatting_write',
        iss: DEV_ISSUER,
        aud: DEV_AUDIENCE,
        iat: now,
        exp: now + 3600,
        ...overrides,
    };
}

export function signHs256(claims, secret, header = { alg: 'HS256', typ: 'JWT' }) {
    const head = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
    const signature = createHmac('sha256', secret).update(head).digest('base64url');
    return `${head}.${signature}`;
}

// Tokens that must each be refused, by name.
export function badTokens(sub) {
    const now = Math.floor(Date.now() / 1000);
    const claims = devClaims(sub);
    const unsigned = `${base64url(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.`
        + `${base64url(JSON.stringify(claims))}.`;
    return {
        'a bad signature': signHs256(claims, 'not-the-dev-key-0123456789abcdef0123456789'),
        // an hour past exp, well beyond the 30 s leeway of the dev stack
        'an expired token': signHs256(devClaims(sub, { iat: now - 7200, exp: now - 3600 }),
            devSecret()),
        'alg none': unsigned,
        'a wrong audience': signHs256(devClaims(sub, { aud: 'someone-else' }), devSecret()),
        'garbage': 'not.a.token',
    };
}
