// The daemon's health check as nginx serves it. Hub messages go through
// the push API (lib/push.mjs).

// /healthz through nginx, with its JSON body
export async function healthOf(stack) {
    try {
        const response = await fetch(`${stack.url}/healthz`, { signal: AbortSignal.timeout(2000) });
        return { status: response.status, json: await response.json().catch(() => undefined) };
    } catch {
        return { status: 0, json: undefined };
    }
}
