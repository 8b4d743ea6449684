// Every token defect the edge must refuse, every key kind it must accept
// (RSA and EC keys from PEM files and from a JWKS with several kids),
// keys reloaded with nginx, required roles and scopes, the Close of a
// connection whose token expires, and no token in any log.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';

import * as signalR from '@microsoft/signalr';

import { HUB_PATH, buildConnection } from './lib/hub.mjs';
import { upgrade } from './lib/rawws.mjs';
import { api, assertProblem } from './lib/rest.mjs';
import {
    Bystander, claimsFor, makeKeys, rotateKey, signWith, sleep, startSecurityStack, statusWith,
} from './lib/security.mjs';
import { devSecret, signHs256 } from './lib/tokens.mjs';

let stack;
let keys;

before(async () => {
    keys = await makeKeys();
    // the daemon logs at debug: the log check then sees all it writes
    stack = await startSecurityStack(keys, { SIGNALRD_LOG_LEVEL: 'debug' });
});

after(async () => {
    await stack?.stop();
});

const now = () => Math.floor(Date.now() / 1000);

const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');

function hs(alg, claims, secret = devSecret(), header = {}) {
    const head = `${b64({ alg, typ: 'JWT', ...header })}.${b64(claims)}`;
    const mac = createHmac(`sha${alg.slice(2)}`, secret).update(head).digest('base64url');
    return `${head}.${mac}`;
}

function rs(alg, kid, key, claims = claimsFor('keys-user')) {
    return signWith(key.privateKey, alg, claims, kid ? { kid } : {});
}

test('RSA and EC keys of a JWKS are chosen by kid, PEM keys by their type', async () => {
    const accepted = {
        'RS256 by kid rsa-a': ['/keys/jwks', rs('RS256', 'rsa-a', keys.rsaA)],
        'PS256 by kid rsa-b': ['/keys/jwks', rs('PS256', 'rsa-b', keys.rsaB)],
        'ES256 by kid ec-p256': ['/keys/jwks', rs('ES256', 'ec-p256', keys.ec)],
        'ES384 by kid ec-p384': ['/keys/jwks', rs('ES384', 'ec-p384', keys.ec384)],
        'RS256 from a PEM file': ['/keys/rsa', rs('RS256', null, keys.pemRsa)],
        'RS384 from a PEM file': ['/keys/rsa', rs('RS384', null, keys.pemRsa)],
        'RS512 from a PEM file': ['/keys/rsa', rs('RS512', null, keys.pemRsa)],
        'PS384 from a PEM file': ['/keys/rsa', rs('PS384', null, keys.pemRsa)],
        'PS512 from a PEM file': ['/keys/rsa', rs('PS512', null, keys.pemRsa)],
        'ES256 from a PEM file': ['/keys/ec', rs('ES256', null, keys.pemEc)],
        'HS256 with the dev secret': ['/api/v1/chats', hs('HS256', claimsFor('keys-hs'))],
        'HS384 with the dev secret': ['/api/v1/chats', hs('HS384', claimsFor('keys-hs'))],
        'HS512 with the dev secret': ['/api/v1/chats', hs('HS512', claimsFor('keys-hs'))],
        'an audience list naming ours': ['/keys/rsa', rs('RS256', null, keys.pemRsa,
            claimsFor('keys-user', { aud: ['someone-else', 'nginx-signalr'] }))],
    };
    for (const [name, [where, token]] of Object.entries(accepted)) {
        assert.equal(await statusWith(stack, where, token), 200, `${name} is accepted at ${where}`);
    }
});

test('every token defect is answered 401 with a short reason, never the token', async () => {
    const c = claimsFor('defect-user');
    const rsaPem = keys.pemRsa.publicKey.export({ type: 'spki', format: 'pem' });
    const defects = {
        'no token': ['/keys/jwks', undefined, 'missing token'],
        'garbage': ['/keys/jwks', 'not.a.token', 'malformed token'],
        'three empty parts': ['/keys/jwks', '..', null],
        'a bad signature': ['/keys/jwks', rs('RS256', 'rsa-a', keys.rsaB), 'invalid signature'],
        'an unknown kid': ['/keys/jwks', rs('RS256', 'no-such-kid', keys.rsaA), 'unknown key'],
        'alg none': ['/keys/jwks', `${b64({ alg: 'none', typ: 'JWT' })}.${b64(c)}.`,
            'algorithm not allowed'],
        'HS256 signed with the RSA public key (algorithm confusion)':
            ['/keys/rsa', hs('HS256', c, rsaPem), 'algorithm not allowed'],
        'an RSA token against an EC key': ['/keys/ec', rs('RS256', null, keys.pemRsa),
            'algorithm not allowed'],
        'expired past the leeway': ['/keys/rsa', rs('RS256', null, keys.pemRsa,
            claimsFor('defect-user', { exp: now() - 30 })), 'token expired'],
        'not yet valid': ['/keys/rsa', rs('RS256', null, keys.pemRsa,
            claimsFor('defect-user', { nbf: now() + 300 })), 'token not yet valid'],
        'a wrong issuer': ['/keys/rsa', rs('RS256', null, keys.pemRsa,
            claimsFor('defect-user', { iss: 'https://evil.example' })), 'wrong issuer'],
        'a wrong audience': ['/keys/rsa', rs('RS256', null, keys.pemRsa,
            claimsFor('defect-user', { aud: ['a', 'b'] })), 'wrong audience'],
        'no user claim': ['/keys/rsa', rs('RS256', null, keys.pemRsa,
            claimsFor(undefined)), 'missing user claim'],
        'a truncated signature': ['/keys/rsa',
            rs('RS256', null, keys.pemRsa).slice(0, -10), null],
    };
    for (const [name, [where, token, reason]] of Object.entries(defects)) {
        const response = await api(stack, 'GET', where, { token });
        assertProblem(response, 401, `${name} at ${where}`);
        assert.match(response.headers.get('www-authenticate') ?? '', /^Bearer/,
            `${name}: the 401 asks for a bearer token`);
        if (reason) {
            assert.equal(response.json.detail, reason, `${name}: the reason is "${reason}"`);
        }
        assert.ok(response.json.detail.length < 40, `${name}: the reason is short`);
        const longest = (token ?? '').split('.').sort((a, b) => b.length - a.length)[0];
        if (longest && longest.length >= 8) {
            assert.equal(response.text.includes(longest), false,
                `${name}: the answer does not echo the token`);
        }
    }
});

test('a token without a required role or scope is answered 403', async () => {
    const secret = devSecret();
    const cases = {
        'no role user': [claimsFor('r1', { role: 'guest', roles: ['guest'] }), 'missing role'],
        'no chatting_write scope': [claimsFor('r2', { scope: 'chatting_read' }), 'missing scope'],
        'a scope that only starts like one': [claimsFor('r3',
            { scope: 'chatting_read chatting_writer' }), 'missing scope'],
    };
    for (const [name, [claims, reason]] of Object.entries(cases)) {
        const token = signHs256(claims, secret);
        const negotiate = await api(stack, 'POST', `${HUB_PATH}/negotiate?negotiateVersion=1`,
            { token });
        assertProblem(negotiate, 403, `negotiate with ${name}`);
        assert.equal(negotiate.json.detail, reason, `${name}: the reason is "${reason}"`);
        const ws = await upgrade(stack.port,
            `${HUB_PATH}?access_token=${encodeURIComponent(token)}`);
        assert.equal(ws.status, 403, `the upgrade with ${name} answers 403`);
    }
    const rest = await api(stack, 'GET', '/api/v1/chats',
        { token: signHs256(claimsFor('r4', { role: 'guest', roles: [] }), secret) });
    assertProblem(rest, 403, 'REST without the role user');
});

test('Keycloak roles (realm_access.roles) and array scopes (scp) are read', async () => {
    const base = { iss: 'https://idp.example.test/realms/shop', aud: ['account', 'shop-api'] };
    const ok = rs('RS256', 'rsa-a', keys.rsaA, claimsFor('kc-admin', {
        ...base, realm_access: { roles: ['offline_access', 'admin'] }, scp: ['orders.read'],
    }));
    assert.equal(await statusWith(stack, '/keys/keycloak', ok), 200,
        'realm_access.roles with admin and scp with orders.read pass');
    const words = rs('RS256', 'rsa-a', keys.rsaA, claimsFor('kc-admin', {
        ...base, realm_access: { roles: ['admin'] }, scp: 'orders.write orders.read',
    }));
    assert.equal(await statusWith(stack, '/keys/keycloak', words), 200,
        'a space separated scp string passes');
    const topLevel = rs('RS256', 'rsa-a', keys.rsaA, claimsFor('kc-user', {
        ...base, roles: ['admin'], scp: ['orders.read'],
    }));
    assert.equal(await statusWith(stack, '/keys/keycloak', topLevel), 403,
        'a top level roles claim is not read where realm_access.roles is configured');
    const noScope = rs('RS256', 'rsa-a', keys.rsaA, claimsFor('kc-admin', {
        ...base, realm_access: { roles: ['admin'] },
    }));
    assert.equal(await statusWith(stack, '/keys/keycloak', noScope), 403,
        'no scp claim is 403');
});

test('a changed key file is picked up by an nginx reload', async () => {
    const oldToken = rs('RS256', null, keys.rotating);
    const newToken = rs('RS256', null, keys.rotated);
    assert.equal(await statusWith(stack, '/keys/rotating', oldToken), 200,
        'the current key is accepted before the rotation');
    assert.equal(await statusWith(stack, '/keys/rotating', newToken), 401,
        'the next key is refused before the rotation');

    await rotateKey(keys);
    assert.equal(await statusWith(stack, '/keys/rotating', newToken), 401,
        'rewriting the file alone changes nothing: keys load with the configuration');

    process.kill(await stack.pidOf('nginx'), 'SIGHUP');
    let status = 0;
    for (let i = 0; i < 100 && status !== 200; i++) {
        await sleep(100);
        status = await statusWith(stack, '/keys/rotating', newToken);
    }
    assert.equal(status, 200, 'after the reload the new key is accepted');
    // old workers may still answer for a moment while they finish
    let oldStatus = 200;
    for (let i = 0; i < 100 && oldStatus !== 401; i++) {
        oldStatus = await statusWith(stack, '/keys/rotating', oldToken);
        if (oldStatus !== 401) {
            await sleep(100);
        }
    }
    assert.equal(oldStatus, 401, 'after the reload the old key is refused');
    assert.equal(await stack.health(), 200, 'the stack is healthy after the reload');
});

test('a connection whose token expires gets a Close that lets it reconnect', async () => {
    const bystander = await Bystander.start(stack, 'expiry-bystander');
    const issued = [];
    const connection = buildConnection(stack, {
        reconnectDelays: [0, 500, 1000],
        tokenFactory: () => {
            // 2 s of life, and the location allows 1 s of leeway
            const token = signHs256(claimsFor('expiring-user', { exp: now() + 2 }), devSecret());
            issued.push(token);
            return token;
        },
    });
    const reconnecting = new Promise((resolve) => connection.onreconnecting(resolve));
    const reconnected = new Promise((resolve) => connection.onreconnected(resolve));
    await connection.start();
    const startedAt = Date.now();

    const error = await Promise.race([reconnecting,
        sleep(10000).then(() => { throw new Error('no reconnect within 10 s'); })]);
    const elapsed = Date.now() - startedAt;
    assert.match(String(error?.message), /token expired/,
        `the Close names the reason (got ${error?.message})`);
    assert.ok(elapsed >= 1000 && elapsed < 6000,
        `the Close comes when the token expires, after ${elapsed} ms`);
    await reconnected;
    assert.equal(connection.state, signalR.HubConnectionState.Connected,
        'the client is connected again');
    assert.ok(issued.length >= 2, 'the client asked its factory for a fresh token');
    await connection.stop();
    await bystander.assertUnharmed('an expiring token');
});

test('no bearer token reaches any log, even where the format logs $request', async () => {
    // a refused token in the query, logged at info with the request line
    const expired = signHs256(claimsFor('log-user', { exp: now() - 60 }), devSecret());
    const refused = await upgrade(stack.port, `${HUB_PATH}?access_token=${expired}&x=1`);
    assert.equal(refused.status, 401, 'the expired token in the query is refused');
    const good = signHs256(claimsFor('log-user'), devSecret());
    const accepted = await upgrade(stack.port, `${HUB_PATH}?access_token=${good}`);
    assert.equal(accepted.status, 101, 'the good token in the query is accepted');
    accepted.raw.close();

    let log = '';
    for (let i = 0; i < 50 && !log.includes('access_token=[redacted]&x=1'); i++) {
        await sleep(100);
        log = await stack.accessLog();
    }
    assert.match(log, /access_token=\[redacted\]&x=1/,
        'the access log has the request line with the token redacted');
    await stack.assertNoTokensLogged();
    const stackLog = await readFile(path.join(stack.stateDir, 'stack.log'), 'utf8');
    assert.match(stackLog, /signalr token refused: token expired/,
        'the error log has the refusal, at info, without the token');
});
