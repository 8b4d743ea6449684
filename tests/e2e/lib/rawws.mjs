// A deliberately small WebSocket client over node:net that builds every
// frame by hand, so that tests can send what no well-behaved library
// would: unmasked frames, invalid UTF-8, oversized messages, broken
// upgrade requests.
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';

export const OPCODE = { continuation: 0, text: 1, binary: 2, close: 8, ping: 9, pong: 10 };
const RFC6455_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const RECORD_SEPARATOR = '\x1e';

export function acceptKeyFor(key) {
    return createHash('sha1').update(key + RFC6455_GUID).digest('base64');
}

// One frame as a client sends it: masked unless told otherwise.
export function encodeFrame(opcode, payload, { fin = true, mask = true, rsv = 0 } = {}) {
    const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload ?? '');
    let header;
    if (data.length < 126) {
        header = Buffer.alloc(2);
        header[1] = data.length;
    } else if (data.length < 65536) {
        header = Buffer.alloc(4);
        header[1] = 126;
        header.writeUInt16BE(data.length, 2);
    } else {
        header = Buffer.alloc(10);
        header[1] = 127;
        header.writeBigUInt64BE(BigInt(data.length), 2);
    }
    header[0] = (fin ? 0x80 : 0) | (rsv << 4) | opcode;
    if (!mask) {
        return Buffer.concat([header, data]);
    }
    header[1] |= 0x80;
    const key = randomBytes(4);
    const masked = Buffer.alloc(data.length);
    for (let i = 0; i < data.length; i++) {
        masked[i] = data[i] ^ key[i % 4];
    }
    return Buffer.concat([header, key, masked]);
}

export class RawSocket {
    constructor(socket) {
        this.socket = socket;
        this.buffer = Buffer.alloc(0);
        this.closed = false;
        this.waiter = null;
        socket.on('data', (chunk) => {
            this.buffer = Buffer.concat([this.buffer, chunk]);
            this.wake();
        });
        socket.on('close', () => {
            this.closed = true;
            this.wake();
        });
        // a server closing on us while we write is what several tests want
        socket.on('error', () => {});
    }

    wake() {
        if (this.waiter) {
            const waiter = this.waiter;
            this.waiter = null;
            waiter();
        }
    }

    // resolves when there is more input or the socket closed
    async more(deadline, what) {
        if (this.closed) {
            throw new Error(`connection closed while waiting for ${what}`);
        }
        const remaining = deadline - Date.now();
        if (remaining <= 0) {
            throw new Error(`timed out waiting for ${what}`);
        }
        await new Promise((resolve) => {
            const timer = setTimeout(resolve, remaining);
            this.waiter = () => {
                clearTimeout(timer);
                resolve();
            };
        });
    }

    send(bytes) {
        if (!this.socket.destroyed) {
            this.socket.write(bytes);
        }
    }

    sendFrame(opcode, payload, options) {
        this.send(encodeFrame(opcode, payload, options));
    }

    sendText(text, options) {
        this.sendFrame(OPCODE.text, Buffer.from(text, 'utf8'), options);
    }

    // The next server frame: { fin, rsv, opcode, masked, payload, code,
    // reason }, code and reason for close frames.
    async nextFrame(timeoutMs = 5000) {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
            const frame = this.parseFrame();
            if (frame) {
                return frame;
            }
            await this.more(deadline, 'a frame from the server');
        }
    }

    parseFrame() {
        const b = this.buffer;
        if (b.length < 2) {
            return null;
        }
        let length = b[1] & 0x7f;
        let offset = 2;
        if (length === 126) {
            if (b.length < 4) {
                return null;
            }
            length = b.readUInt16BE(2);
            offset = 4;
        } else if (length === 127) {
            if (b.length < 10) {
                return null;
            }
            length = Number(b.readBigUInt64BE(2));
            offset = 10;
        }
        const masked = (b[1] & 0x80) !== 0;
        if (masked) {
            offset += 4;
        }
        if (b.length < offset + length) {
            return null;
        }
        const payload = Buffer.from(b.subarray(offset, offset + length));
        this.buffer = b.subarray(offset + length);
        const frame = {
            fin: (b[0] & 0x80) !== 0,
            rsv: (b[0] >> 4) & 7,
            opcode: b[0] & 0x0f,
            masked,
            payload,
        };
        if (frame.opcode === OPCODE.close) {
            frame.code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
            frame.reason = payload.subarray(2).toString('utf8');
        }
        return frame;
    }

    // skips data frames (pings, keep-alive messages) until a close frame
    async nextClose(timeoutMs = 5000) {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
            const frame = await this.nextFrame(Math.max(deadline - Date.now(), 1));
            if (frame.opcode === OPCODE.close) {
                return frame;
            }
        }
    }

    // resolves true once the server closed the TCP connection, false if
    // it was still open after timeoutMs (then this side closes it)
    async waitClosed(timeoutMs = 6000) {
        if (this.closed) {
            return true;
        }
        let timedOut = false;
        const timer = setTimeout(() => {
            timedOut = true;
            this.socket.destroy();
        }, timeoutMs);
        await once(this.socket, 'close');
        clearTimeout(timer);
        return !timedOut;
    }

    // SignalR handshake over this socket; the parsed handshake response
    async handshake(protocol = 'json', timeoutMs = 5000) {
        this.sendText(JSON.stringify({ protocol, version: 1 }) + RECORD_SEPARATOR);
        const frame = await this.nextFrame(timeoutMs);
        const text = frame.payload.toString('utf8');
        if (!text.endsWith(RECORD_SEPARATOR)) {
            throw new Error(`handshake response is not a JSON record: ${JSON.stringify(text)}`);
        }
        return JSON.parse(text.slice(0, -1));
    }

    close() {
        this.socket.destroy();
    }
}

async function readBody(raw, headers, deadline) {
    if ((headers['transfer-encoding'] ?? '').toLowerCase() === 'chunked') {
        while (raw.buffer.indexOf('0\r\n\r\n') < 0 && !raw.closed) {
            await raw.more(deadline, 'the chunked response body');
        }
        let rest = raw.buffer.toString('latin1');
        let body = '';
        for (;;) {
            const eol = rest.indexOf('\r\n');
            const size = Number.parseInt(rest.slice(0, eol), 16);
            if (!(size > 0)) {
                break;
            }
            body += rest.slice(eol + 2, eol + 2 + size);
            rest = rest.slice(eol + 4 + size);
        }
        return Buffer.from(body, 'latin1').toString('utf8');
    }

    const length = Number.parseInt(headers['content-length'] ?? '0', 10);
    while (raw.buffer.length < length && !raw.closed) {
        await raw.more(deadline, 'the response body');
    }
    return raw.buffer.subarray(0, length).toString('utf8');
}

// Sends an HTTP/1.1 request by hand and reads the response head; the
// body too when the answer is not 101. Returns { status, headers, body,
// raw } where raw is a RawSocket positioned after the response head.
export async function rawRequest(port, { method = 'GET', path, headers = {}, timeoutMs = 5000 }) {
    const socket = net.connect(port, '127.0.0.1');
    await once(socket, 'connect');
    const raw = new RawSocket(socket);

    const lines = [`${method} ${path} HTTP/1.1`, `Host: 127.0.0.1:${port}`];
    for (const [name, value] of Object.entries(headers)) {
        if (value !== undefined && value !== null) {
            lines.push(`${name}: ${value}`);
        }
    }
    raw.send(`${lines.join('\r\n')}\r\n\r\n`);

    const deadline = Date.now() + timeoutMs;
    let end;
    while ((end = raw.buffer.indexOf('\r\n\r\n')) < 0) {
        await raw.more(deadline, 'the response head');
    }
    const head = raw.buffer.subarray(0, end).toString('latin1').split('\r\n');
    raw.buffer = raw.buffer.subarray(end + 4);

    const status = Number.parseInt(head[0].split(' ')[1], 10);
    const responseHeaders = {};
    for (const line of head.slice(1)) {
        const colon = line.indexOf(':');
        responseHeaders[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }

    let body = '';
    if (status !== 101) {
        body = await readBody(raw, responseHeaders, deadline);
        raw.close();
    }
    return { status, headers: responseHeaders, body, raw };
}

// A WebSocket upgrade request to path; headers override or (with null)
// remove the usual ones. Returns rawRequest's answer plus the key sent.
export async function upgrade(port, path, headers = {}) {
    const key = randomBytes(16).toString('base64');
    const response = await rawRequest(port, {
        path,
        headers: {
            Upgrade: 'websocket',
            Connection: 'Upgrade',
            'Sec-WebSocket-Version': '13',
            'Sec-WebSocket-Key': key,
            ...headers,
        },
    });
    return { ...response, key };
}
