// Waiting for something that happens in another process.
import { setTimeout as sleep } from 'node:timers/promises';

// Polls condition() (which may be async) every 100 ms until it holds;
// throws naming what was awaited when timeoutMs passes first.
export async function waitFor(condition, what, timeoutMs = 20000) {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
        if (await condition()) {
            return;
        }
        await sleep(100);
    }
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}
