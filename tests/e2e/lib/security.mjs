// The stack of the security tests: tests/e2e/security.nginx.conf.in with
// keys generated here (RSA and EC, PEM and JWKS), and tokens signed with
// them by node:crypto, so that no part of the project signs what its
// verifier checks.
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign, constants } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { FragmentStream, buildConnection } from './hub.mjs';
import { sourceDir } from './paths.mjs';
import { createChat } from './rest.mjs';
import { upgrade } from './rawws.mjs';
import { startStack } from './stack.mjs';
import { devClaims, devToken } from './tokens.mjs';

export const RECORD_SEPARATOR = '\x1e';

function base64url(data) {
    return Buffer.from(data).toString('base64url');
}

function rsaKey() {
    return generateKeyPairSync('rsa', { modulusLength: 2048 });
}

function ecKey() {
    return generateKeyPairSync('ec', { namedCurve: 'P-256' });
}

function jwk(keyPair, kid, alg) {
    return { ...keyPair.publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
}

function pem(keyPair) {
    return keyPair.publicKey.export({ type: 'spki', format: 'pem' });
}

// Signs claims with a private key for alg (RS*, PS*, ES*), header extras
// such as kid included.
export function signWith(privateKey, alg, claims, header = {}) {
    const head = `${base64url(JSON.stringify({ alg, typ: 'JWT', ...header }))}.`
        + base64url(JSON.stringify(claims));
    const hash = `sha${alg.slice(2)}`;
    let options = privateKey;
    if (alg.startsWith('PS')) {
        options = { key: privateKey, padding: constants.RSA_PKCS1_PSS_PADDING,
            saltLength: Number(alg.slice(2)) / 8 };
    } else if (alg.startsWith('ES')) {
        options = { key: privateKey, dsaEncoding: 'ieee-p1363' };
    }
    return `${head}.${sign(hash, Buffer.from(head), options).toString('base64url')}`;
}

const keyDirs = [];
process.on('exit', () => {
    for (const dir of keyDirs) {
        rmSync(dir, { recursive: true, force: true });
    }
});

// Keys on disk for the key locations; the private halves stay here. The
// folder goes when the test process exits.
export async function makeKeys() {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'signalr-keys-'));
    keyDirs.push(dir);
    const keys = { dir, rsaA: rsaKey(), rsaB: rsaKey(), ec: ecKey(), ec384: null,
        pemRsa: rsaKey(), pemEc: ecKey(), rotating: rsaKey(), rotated: rsaKey() };
    keys.ec384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const jwks = { keys: [jwk(keys.rsaA, 'rsa-a', 'RS256'), jwk(keys.rsaB, 'rsa-b', 'PS256'),
        jwk(keys.ec, 'ec-p256', 'ES256'), jwk(keys.ec384, 'ec-p384', 'ES384')] };
    await writeFile(path.join(dir, 'jwks.json'), JSON.stringify(jwks));
    await writeFile(path.join(dir, 'rsa.pem'), pem(keys.pemRsa));
    await writeFile(path.join(dir, 'ec.pem'), pem(keys.pemEc));
    await writeFile(path.join(dir, 'rotating.pem'), pem(keys.rotating));
    return keys;
}

// Replaces the rotating key file with the "rotated" key's public half.
export async function rotateKey(keys) {
    await writeFile(path.join(keys.dir, 'rotating.pem'), pem(keys.rotated));
}

export async function startSecurityStack(keys, env = {}) {
    const template = await readFile(path.join(sourceDir, 'tests/e2e/security.nginx.conf.in'),
        'utf8');
    const rendered = path.join(keys.dir, 'nginx.conf.in');
    await writeFile(rendered, template.replaceAll('%KEYS%', keys.dir));
    return startStack({
        nginxConf: rendered,
        env: { SIGNALRD_DEMO_TOKEN_RATE: '20', SIGNALRD_DEMO_REPLY_TOKENS: '40', ...env },
    });
}

// GET path with a bearer token; the status
export async function statusWith(stack, urlPath, token) {
    const response = await fetch(`${stack.url}${urlPath}`, {
        headers: token ? { Authorization: `Bearer ${token}` } : {},
        signal: AbortSignal.timeout(10000),
    });
    await response.arrayBuffer();
    return response.status;
}

// A WebSocket of the hub at hubPath with the handshake done, over the
// hand-made client: for what the official client would never send.
export async function rawHub(stack, hubPath, token, protocol = 'json') {
    const ws = await upgrade(stack.port,
        `${hubPath}?access_token=${encodeURIComponent(token)}`);
    assert.equal(ws.status, 101, `the upgrade of ${hubPath} answers 101 (got ${ws.status}: `
        + `${ws.body})`);
    const answer = await ws.raw.handshake(protocol);
    assert.deepEqual(answer, {}, 'the handshake is accepted');
    return ws.raw;
}

// The JSON hub messages of one text frame
export function hubMessages(frame) {
    return frame.payload.toString('utf8').split(RECORD_SEPARATOR).filter((m) => m !== '')
        .map((m) => JSON.parse(m));
}

// Reads frames until the server's close frame: that frame, and the JSON
// hub messages of every frame before it.
export async function readToClose(raw, timeoutMs = 15000) {
    const messages = [];
    for (;;) {
        const frame = await raw.nextFrame(timeoutMs);
        if (frame.opcode === 8) {
            return { close: frame, messages };
        }
        messages.push(...hubMessages(frame));
    }
}

// Reads frames until count Completions arrived (pings skipped); those
// Completions in order.
export async function completions(raw, count, timeoutMs = 10000) {
    const deadline = Date.now() + timeoutMs;
    const found = [];
    while (found.length < count) {
        const frame = await raw.nextFrame(Math.max(deadline - Date.now(), 1));
        if (frame.opcode === 8) {
            throw new Error(`closed (${frame.code}) after ${found.length} of ${count} `
                + 'Completions');
        }
        found.push(...hubMessages(frame).filter((m) => m.type === 3));
    }
    return found;
}

// A bystander: another user streaming a reply through the official
// client while an attack runs, to show that nothing is lost for others.
// Its reply (40 tokens at 20 a second) runs during the attack; after it,
// a second conversation must stream to its end as well.
export class Bystander {
    static async start(stack, name) {
        const bystander = new Bystander();
        bystander.stack = stack;
        bystander.token = await devToken(name);
        bystander.connection = buildConnection(stack, { token: bystander.token });
        // the security stack times clients out after 5 s of silence
        bystander.connection.keepAliveIntervalInMilliseconds = 1000;
        await bystander.connection.start();
        bystander.stream = await bystander.chat(`Keep streaming for ${name}`);
        return bystander;
    }

    async chat(text) {
        const id = await createChat(this.stack, this.token, text);
        const stream = new FragmentStream(this.connection, id);
        await stream.waitFor((f) => f.length >= 1, 'the user turn of the bystander');
        return stream;
    }

    async assertUnharmed(what) {
        const finished = (f) => f.some((x) => x.isFinal && x.id !== f[0].id);
        await this.stream.waitFor(finished, `the bystander's reply to finish (${what})`, 20000);
        assert.equal(this.stream.error, null, `the bystander's stream does not fail (${what})`);
        assert.equal(this.connection.state, 'Connected',
            `the bystander stays connected (${what})`);
        const again = await this.chat('And once more');
        await again.waitFor(finished, `a second reply for the bystander (${what})`, 20000);
        await this.connection.stop();
    }
}

export function claimsFor(sub, overrides = {}) {
    return devClaims(sub, overrides);
}

export { sleep };
