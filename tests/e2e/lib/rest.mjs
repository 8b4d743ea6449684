// The chat REST API through nginx, with a bearer token.
import assert from 'node:assert/strict';

// Returns { status, headers, text, json } whatever the status; json is
// undefined when the body is not JSON.
export async function api(stack, method, path, { token, body, headers = {} } = {}) {
    const requestHeaders = { ...headers };
    if (token) {
        requestHeaders.Authorization = `Bearer ${token}`;
    }
    let payload;
    if (body !== undefined) {
        requestHeaders['Content-Type'] = 'application/json';
        payload = typeof body === 'string' ? body : JSON.stringify(body);
    }

    const response = await fetch(`${stack.url}${path}`, {
        method,
        headers: requestHeaders,
        body: payload,
        signal: AbortSignal.timeout(10000),
    });
    return readResponse(response);
}

// A fetch response as the tests look at it: { status, headers, text,
// json }, json undefined when the body is not JSON.
export async function readResponse(response) {
    const text = await response.text();
    let json;
    try {
        json = text === '' ? undefined : JSON.parse(text);
    } catch {
        json = undefined;
    }
    return { status: response.status, headers: response.headers, text, json };
}

// POST /api/v1/chats: a new conversation with its first prompt; its id
export async function createChat(stack, token, text) {
    const response = await api(stack, 'POST', '/api/v1/chats', {
        token, body: { prompt: { text } },
    });
    assert.equal(response.status, 201,
        `POST /api/v1/chats answers 201 Created (got ${response.status}: ${response.text})`);
    assert.equal(typeof response.json, 'string',
        `POST /api/v1/chats returns the id as a JSON string (got ${response.text})`);
    return response.json;
}

export async function getChat(stack, token, id) {
    const response = await api(stack, 'GET', `/api/v1/chats/${id}`, { token });
    assert.equal(response.status, 200,
        `GET /api/v1/chats/${id} answers 200 (got ${response.status}: ${response.text})`);
    return response.json;
}

export async function cancelChat(stack, token, id) {
    return api(stack, 'DELETE', `/api/v1/chats/${id}/cancel`, { token });
}

// The stored messages of a conversation with the given roles, in order.
export function messagesOf(conversation, role) {
    assert.ok(Array.isArray(conversation?.messages),
        `a conversation has a messages array (got ${JSON.stringify(conversation)})`);
    return conversation.messages.filter((m) => m.role === role);
}

// The problem body every refusal carries
export function assertProblem(response, status, what) {
    assert.equal(response.status, status,
        `${what}: answers ${status} (got ${response.status}: ${response.text})`);
    assert.match(response.headers.get('content-type') ?? '', /json/,
        `${what}: the ${status} body is JSON`);
    assert.equal(response.json?.status, status,
        `${what}: the problem body names status ${status} (got ${response.text})`);
}
