// Reads an OpenAI-compatible streaming endpoint directly: C streams at
// once, each a POST {base}/chat/completions with "stream": true, timing the
// first content token from the request and the gaps between tokens. A
// quick look that needs no build; the provider benchmark (bench/provider-run,
// docs/providers.md) uses bench/provider/direct_reader.cpp instead, whose
// own CPU stays out of the way at a thousand streams.
//
//   node bench/model-direct.mjs --url http://127.0.0.1:18900/v1 --streams 100
import http from 'node:http';

function option(name, fallback) {
    const at = process.argv.indexOf(`--${name}`);
    return at > 0 ? process.argv[at + 1] : fallback;
}

const base = new URL(option('url', 'http://127.0.0.1:18900/v1'));
const streams = Number(option('streams', 1));
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });

function percentiles(values) {
    const sorted = [...values].sort((a, b) => a - b);
    const at = (p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
    return [at(0.5), at(0.9), at(0.99), sorted.at(-1)].map((v) => v.toFixed(2)).join(' / ');
}

function stream(index) {
    return new Promise((resolve, reject) => {
        const body = JSON.stringify({
            model: 'bench', stream: true,
            messages: [{ role: 'user', content: `Benchmark prompt ${index % 10}` }],
        });
        const started = performance.now();
        const times = [];
        const request = http.request(new URL(`${base.pathname}/chat/completions`, base), {
            method: 'POST', agent,
            headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
        }, (response) => {
            let pending = '';
            response.setEncoding('utf8');
            response.on('data', (text) => {
                pending += text;
                let end;
                while ((end = pending.indexOf('\n\n')) >= 0) {
                    const event = pending.slice(0, end);
                    pending = pending.slice(end + 2);
                    if (event.startsWith('data: {') && JSON.parse(event.slice(6))
                        .choices?.[0]?.delta?.content) {
                        times.push(performance.now());
                    }
                }
            });
            response.on('end', () => resolve({ started, times }));
            response.on('error', reject);
        });
        request.on('error', reject);
        request.end(body);
    });
}

const results = await Promise.all(Array.from({ length: streams }, (_, i) => stream(i)));
const ttft = results.map((r) => r.times[0] - r.started);
const gaps = results.flatMap((r) => r.times.slice(1).map((t, i) => t - r.times[i]));
const tokens = results.reduce((n, r) => n + r.times.length, 0);
process.stdout.write(`streams ${streams}, tokens ${tokens}\n`
    + `first token from POST (ms, p50 / p90 / p99 / max): ${percentiles(ttft)}\n`
    + `gap (ms, p50 / p90 / p99 / max): ${percentiles(gaps)}\n`);
agent.destroy();
