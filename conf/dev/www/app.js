// The demo chat page: the official SignalR browser client against the
// chat hub, the REST API for everything else. Plain script, no build.
'use strict';

(() => {
    const HUB_URL = '/api/v1/chats/stream';
    const API_URL = '/api/v1/chats';
    const NO_CONTEXT = { lastMessageId: null, lastFragmentId: null };
    // a dev token lives an hour; fetch a new one well before that
    const TOKEN_MAX_AGE_MS = 30 * 60 * 1000;
    const STORE = {
        user: 'signalr-demo.user',
        protocol: 'signalr-demo.protocol',
        conversation: (user) => `signalr-demo.conversation.${user}`,
    };

    const $ = (id) => document.getElementById(id);
    const ui = {
        signIn: $('sign-in'), signInForm: $('sign-in-form'), userName: $('user-name'),
        protocol: $('protocol'), who: $('who'), whoName: $('who-name'),
        whoProtocol: $('who-protocol'), switchUser: $('switch-user'), chat: $('chat'),
        chatTitle: $('chat-title'), newChat: $('new-chat'), messages: $('messages'),
        empty: $('empty'), promptForm: $('prompt-form'), prompt: $('prompt'),
        send: $('send'), stop: $('stop'), status: $('status'),
    };

    const state = {
        user: null,
        protocol: 'json',
        token: null,
        tokenAt: 0,
        connection: null,
        conversationId: null,
        subscription: null,
        // message id -> { li, textEl, role, text, isFinal, replaced }
        messages: new Map(),
        last: NO_CONTEXT,
        // prompts sent from this page whose turn has not streamed back yet
        pendingPrompts: new Set(),
    };

    function setStatus(text) {
        ui.status.textContent = text;
    }

    async function fetchToken() {
        const response = await fetch(`/dev/token?sub=${encodeURIComponent(state.user)}`);
        if (!response.ok) {
            throw new Error(`GET /dev/token answered ${response.status}`);
        }
        state.token = (await response.text()).trim();
        state.tokenAt = Date.now();
        return state.token;
    }

    async function getToken() {
        if (state.token && Date.now() - state.tokenAt < TOKEN_MAX_AGE_MS) {
            return state.token;
        }
        return fetchToken();
    }

    // REST with the bearer token; one retry with a fresh token on 401
    async function api(method, path, body) {
        for (let attempt = 0; ; attempt++) {
            const headers = { Authorization: `Bearer ${await getToken()}` };
            if (body !== undefined) {
                headers['Content-Type'] = 'application/json';
            }
            const response = await fetch(path, {
                method, headers, body: body === undefined ? undefined : JSON.stringify(body),
            });
            if (response.status === 401 && attempt === 0) {
                state.token = null;
                continue;
            }
            const text = await response.text();
            let json = null;
            try {
                json = text ? JSON.parse(text) : null;
            } catch {
                json = null;
            }
            return { status: response.status, ok: response.ok, json };
        }
    }

    function problemText(response) {
        return response.json?.detail ?? response.json?.title ?? `status ${response.status}`;
    }

    // --- rendering ----------------------------------------------------

    function roleOf(fragment) {
        const known = state.messages.get(fragment.id);
        if (known) {
            return known.role;
        }
        if (fragment.isFinal && state.pendingPrompts.delete(fragment.text)) {
            return 'user';
        }
        const sender = String(fragment.sender ?? '').toLowerCase();
        return sender === 'user' || sender === state.user.toLowerCase() ? 'user' : 'assistant';
    }

    function addMessage(id, role) {
        const li = document.createElement('li');
        li.className = `message ${role}`;
        li.dataset.messageId = id;
        li.dataset.role = role;
        const label = document.createElement('span');
        label.className = 'who-said';
        label.textContent = role === 'user' ? 'You' : 'Assistant';
        const textEl = document.createElement('div');
        textEl.className = 'text';
        li.append(label, textEl);
        ui.messages.append(li);
        ui.empty.hidden = true;

        const message = { li, textEl, role, text: '', isFinal: false, replaced: false };
        state.messages.set(id, message);
        return message;
    }

    function setFinal(message, isFinal) {
        message.isFinal = isFinal;
        message.li.dataset.final = String(isFinal);
        message.li.setAttribute('aria-busy', String(!isFinal));
    }

    function updateControls() {
        const busy = [...state.messages.values()]
            .some((m) => m.role === 'assistant' && !m.isFinal);
        ui.stop.disabled = !busy || !state.conversationId;
    }

    function scrollToEnd() {
        ui.messages.lastElementChild?.scrollIntoView({ block: 'end' });
    }

    function clearMessages() {
        state.messages.clear();
        state.last = NO_CONTEXT;
        ui.messages.replaceChildren();
        ui.empty.hidden = false;
        ui.chatTitle.textContent = 'New conversation';
        updateControls();
    }

    // what GET /api/v1/chats/{id} stores, before the stream replays it
    function renderHistory(conversation) {
        ui.chatTitle.textContent = conversation.name || 'Conversation';
        for (const stored of conversation.messages ?? []) {
            const message = addMessage(stored.id, stored.role === 'user' ? 'user' : 'assistant');
            message.text = stored.text ?? '';
            message.textEl.textContent = message.text;
            message.fromHistory = true;
            setFinal(message, true);
        }
    }

    function onFragment(fragment) {
        let message = state.messages.get(fragment.id);
        if (!message) {
            message = addMessage(fragment.id, roleOf(fragment));
        }
        // the stream replays from the start of each message it sends: its
        // text replaces what the stored history showed
        if (message.fromHistory && !message.replaced) {
            message.text = '';
            message.replaced = true;
        }
        message.text += fragment.text;
        message.textEl.textContent = message.text;
        setFinal(message, Boolean(fragment.isFinal));

        state.last = { lastMessageId: fragment.id, lastFragmentId: fragment.fragmentId };
        updateControls();
        scrollToEnd();
    }

    // --- the hub ------------------------------------------------------

    function follow(conversationId, context) {
        state.subscription?.dispose();
        state.subscription = null;
        if (!state.connection || state.connection.state !== signalR.HubConnectionState.Connected) {
            return;
        }
        const stream = state.connection.stream('Stream', conversationId, context);
        state.subscription = stream.subscribe({
            next: onFragment,
            complete: () => {},
            error: (err) => {
                if (state.conversationId !== conversationId) {
                    return;
                }
                setStatus(`The stream stopped (${err?.message ?? err}); resuming...`);
                // e.g. "hub unavailable" while the daemon restarts
                setTimeout(() => {
                    if (state.conversationId === conversationId) {
                        follow(conversationId, state.last);
                        connectedStatus();
                    }
                }, 1000);
            },
        });
    }

    function connectedStatus() {
        const name = state.protocol === 'messagepack' ? 'MessagePack' : 'JSON';
        setStatus(`Connected as ${state.user} (${name} over WebSockets)`);
    }

    async function connect() {
        let builder = new signalR.HubConnectionBuilder()
            .withUrl(HUB_URL, {
                transport: signalR.HttpTransportType.WebSockets,
                accessTokenFactory: getToken,
            })
            .withAutomaticReconnect()
            .configureLogging(signalR.LogLevel.Warning);
        if (state.protocol === 'messagepack') {
            const { MessagePackHubProtocol } = signalR.protocols.msgpack;
            builder = builder.withHubProtocol(new MessagePackHubProtocol());
        }
        const connection = builder.build();

        connection.onreconnecting(() => setStatus('Connection lost; reconnecting...'));
        connection.onreconnected(() => {
            connectedStatus();
            if (state.conversationId) {
                follow(state.conversationId, state.last);
            }
        });
        connection.onclose((err) => {
            if (state.connection === connection) {
                setStatus(`Disconnected${err ? `: ${err.message}` : ''}. Reload to reconnect.`);
            }
        });

        state.connection = connection;
        setStatus('Connecting...');
        await connection.start();
        connectedStatus();
    }

    // --- conversations ------------------------------------------------

    function remember(conversationId) {
        state.conversationId = conversationId;
        if (conversationId) {
            localStorage.setItem(STORE.conversation(state.user), conversationId);
        } else {
            localStorage.removeItem(STORE.conversation(state.user));
        }
    }

    function newest(list) {
        return [...list].sort((a, b) => String(a.createdAt).localeCompare(String(b.createdAt)))
            .at(-1);
    }

    // the conversation kept in localStorage, else the newest one listed
    async function restoreConversation() {
        const listed = await api('GET', API_URL);
        if (!listed.ok) {
            throw new Error(`GET ${API_URL}: ${problemText(listed)}`);
        }
        const list = Array.isArray(listed.json) ? listed.json : (listed.json?.items ?? []);
        const kept = localStorage.getItem(STORE.conversation(state.user));
        const chosen = list.find((c) => c.id === kept) ?? newest(list);
        if (!chosen) {
            remember(null);
            return;
        }

        const response = await api('GET', `${API_URL}/${encodeURIComponent(chosen.id)}`);
        if (!response.ok) {
            remember(null);
            return;
        }
        remember(chosen.id);
        renderHistory(response.json);
        follow(chosen.id, NO_CONTEXT);
    }

    async function sendPrompt(text) {
        state.pendingPrompts.add(text);
        if (!state.conversationId) {
            const response = await api('POST', API_URL, { prompt: { text } });
            if (response.status !== 201) {
                throw new Error(`could not start the chat: ${problemText(response)}`);
            }
            remember(response.json);
            ui.chatTitle.textContent = text.length > 48 ? `${text.slice(0, 47)}...` : text;
            follow(state.conversationId, NO_CONTEXT);
            return;
        }
        const id = state.conversationId;
        const response = await api('PUT', `${API_URL}/${encodeURIComponent(id)}`,
            { id, prompt: { text } });
        if (!response.ok) {
            throw new Error(response.status === 409
                ? 'wait for the reply to finish, or stop it'
                : `could not send: ${problemText(response)}`);
        }
    }

    // --- wiring -------------------------------------------------------

    async function signIn(user, protocol) {
        state.user = user;
        state.protocol = protocol;
        state.token = null;
        localStorage.setItem(STORE.user, user);
        localStorage.setItem(STORE.protocol, protocol);

        ui.whoName.textContent = user;
        ui.whoProtocol.textContent = protocol === 'messagepack' ? 'MessagePack' : 'JSON';
        ui.signIn.hidden = true;
        ui.who.hidden = false;
        ui.chat.hidden = false;
        clearMessages();

        try {
            await connect();
            await restoreConversation();
        } catch (err) {
            setStatus(`Could not connect: ${err.message}`);
        }
        ui.prompt.focus();
    }

    async function signOut() {
        state.subscription?.dispose();
        state.subscription = null;
        const connection = state.connection;
        state.connection = null;
        await connection?.stop();
        localStorage.removeItem(STORE.user);
        state.user = null;
        state.conversationId = null;
        clearMessages();
        ui.chat.hidden = true;
        ui.who.hidden = true;
        ui.signIn.hidden = false;
        setStatus('Not connected');
        ui.userName.focus();
    }

    ui.signInForm.addEventListener('submit', (event) => {
        event.preventDefault();
        if (ui.signInForm.reportValidity()) {
            signIn(ui.userName.value.trim(), ui.protocol.value);
        }
    });

    ui.promptForm.addEventListener('submit', async (event) => {
        event.preventDefault();
        const text = ui.prompt.value.trim();
        if (!text) {
            return;
        }
        ui.send.disabled = true;
        try {
            await sendPrompt(text);
            ui.prompt.value = '';
        } catch (err) {
            setStatus(`Not sent: ${err.message}`);
        } finally {
            ui.send.disabled = false;
            ui.prompt.focus();
        }
    });

    ui.prompt.addEventListener('keydown', (event) => {
        if (event.key === 'Enter' && !event.shiftKey) {
            event.preventDefault();
            ui.promptForm.requestSubmit();
        }
    });

    ui.stop.addEventListener('click', async () => {
        ui.stop.disabled = true;
        const response = await api('DELETE',
            `${API_URL}/${encodeURIComponent(state.conversationId)}/cancel`);
        if (response.status !== 204) {
            setStatus(`Could not stop the reply: ${problemText(response)}`);
            updateControls();
        }
    });

    ui.newChat.addEventListener('click', () => {
        state.subscription?.dispose();
        state.subscription = null;
        remember(null);
        clearMessages();
        ui.prompt.focus();
    });

    ui.switchUser.addEventListener('click', signOut);

    const savedUser = localStorage.getItem(STORE.user);
    ui.protocol.value = localStorage.getItem(STORE.protocol) ?? 'json';
    if (savedUser) {
        ui.userName.value = savedUser;
        signIn(savedUser, ui.protocol.value);
    } else {
        ui.userName.focus();
    }
})();
