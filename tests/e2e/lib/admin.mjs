// The daemon's own HTTP socket, which nginx does not expose: the health
// check as the daemon answers it, and the admin routes that publish hub
// messages through the backplane (daemon/src/admin_api.h).
import http from 'node:http';
import path from 'node:path';

// Returns { status, json, text } of one request on the stack's api.sock.
export function daemonRequest(stack, method, route, body) {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
        const request = http.request({
            socketPath: path.join(stack.stateDir, 'api.sock'),
            path: route,
            method,
            headers: payload === undefined ? {} : {
                'Content-Type': 'application/json',
                'Content-Length': Buffer.byteLength(payload),
            },
            timeout: 5000,
        }, (response) => {
            let text = '';
            response.setEncoding('utf8');
            response.on('data', (chunk) => { text += chunk; });
            response.on('end', () => {
                let json;
                try {
                    json = text === '' ? undefined : JSON.parse(text);
                } catch {
                    json = undefined;
                }
                resolve({ status: response.statusCode, json, text });
            });
        });
        request.on('timeout', () => request.destroy(new Error(`${method} ${route} timed out`)));
        request.on('error', reject);
        request.end(payload);
    });
}

// /healthz through nginx, with its JSON body
export async function healthOf(stack) {
    try {
        const response = await fetch(`${stack.url}/healthz`, { signal: AbortSignal.timeout(2000) });
        return { status: response.status, json: await response.json().catch(() => undefined) };
    } catch {
        return { status: 0, json: undefined };
    }
}
