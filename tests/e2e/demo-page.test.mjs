// The demo page in Debian's Chromium, driven by playwright-core: pick a
// user, chat, watch the reply stream, stop one, reload and find the
// conversation again. A screenshot lands in the temporary directory.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { chromium as chromiumBinary, requireInstalled } from './lib/paths.mjs';
import { api, messagesOf } from './lib/rest.mjs';
import { startStack } from './lib/stack.mjs';
import { devToken } from './lib/tokens.mjs';

const { chromium } = await import('playwright-core');

const SCREENSHOT = path.join(os.tmpdir(), 'signalr-demo-page.png');
const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
    '--no-first-run', '--disable-background-networking', '--disable-component-update',
    '--disable-sync'];
const USER = 'demo-page-user';

let stack;
let profileDir;
let browser;
let page;

before(async () => {
    requireInstalled(chromiumBinary, 'Debian\'s chromium');
    // 40 tokens at 20 a second: slow enough to see the text grow and to
    // press Stop in the middle
    stack = await startStack({
        env: { SIGNALRD_DEMO_TOKEN_RATE: '20', SIGNALRD_DEMO_REPLY_TOKENS: '40' },
    });
    profileDir = await mkdtemp(path.join(os.tmpdir(), 'signalr-e2e-chromium-'));
    browser = await chromium.launchPersistentContext(profileDir, {
        executablePath: chromiumBinary,
        headless: true,
        args: CHROMIUM_FLAGS,
        viewport: { width: 1000, height: 720 },
    });
    page = browser.pages()[0] ?? await browser.newPage();
    page.pageErrors = [];
    page.on('pageerror', (err) => page.pageErrors.push(err.message));
});

after(async () => {
    await browser?.close();
    await stack?.stop();
    if (profileDir) {
        await rm(profileDir, { recursive: true, force: true });
    }
});

const lastAssistant = () => page.locator('#messages li[data-role="assistant"]').last();

// Samples the last reply's text until it is final; returns every distinct
// text seen on the way.
async function watchReply(timeoutMs = 15000) {
    const seen = [];
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
        const reply = lastAssistant();
        if (await reply.count() > 0) {
            // text and state in one read, so that they belong together
            const { text, isFinal } = await reply.evaluate((li) => ({
                text: li.querySelector('.text').textContent,
                isFinal: li.dataset.final === 'true',
            }));
            if (seen.at(-1) !== text) {
                seen.push(text);
            }
            if (isFinal) {
                return seen;
            }
        }
        await page.waitForTimeout(30);
    }
    throw new Error(`the reply did not finish in ${timeoutMs} ms (texts seen: ${seen.length})`);
}

async function storedConversation() {
    const token = await devToken(USER);
    const list = await api(stack, 'GET', '/api/v1/chats', { token });
    assert.equal(list.status, 200, 'the user\'s conversations can be listed');
    const conversations = Array.isArray(list.json) ? list.json : list.json.items;
    assert.equal(conversations.length, 1, 'the page created exactly one conversation');
    const response = await api(stack, 'GET', `/api/v1/chats/${conversations[0].id}`, { token });
    return response.json;
}

test('pick a user, start a chat, watch the reply stream in and finish', async () => {
    await page.goto(`${stack.url}/`);
    await page.getByLabel('User name', { exact: true }).fill(USER);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText(`Connected as ${USER}`).waitFor({ timeout: 15000 });

    await page.getByLabel('Your message', { exact: true }).fill('Hello from the browser');
    await page.getByRole('button', { name: 'Send' }).click();
    await page.locator('#messages li[data-role="user"]').first().waitFor();
    assert.equal(await page.locator('#messages li[data-role="user"] .text').first().textContent(),
        'Hello from the browser', 'the page shows the user\'s turn');

    const texts = await watchReply();
    assert.ok(texts.filter((t) => t !== '').length >= 3,
        `the reply appeared piece by piece (${texts.length} distinct texts)`);
    const [stored] = messagesOf(await storedConversation(), 'assistant');
    assert.equal(texts.at(-1), stored.text, 'the page shows the whole stored reply');
    assert.equal(await page.getByRole('button', { name: 'Stop' }).isDisabled(), true,
        'Stop is disabled once the reply is done');
    assert.deepEqual(page.pageErrors, [], 'the page raised no script error');
});

test('after a reload the conversation comes back', async () => {
    const before = await page.locator('#messages li').allTextContents();
    await page.reload();
    await page.getByText(`Connected as ${USER}`).waitFor({ timeout: 15000 });
    await page.locator('#messages li[data-role="assistant"][data-final="true"]').first()
        .waitFor({ timeout: 10000 });
    // the replay may come as one fragment per message: wait until it settles
    await page.waitForTimeout(500);
    assert.deepEqual(await page.locator('#messages li').allTextContents(), before,
        'the same messages are shown after the reload');
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    assert.deepEqual(page.pageErrors, [], 'the page raised no script error');
});

test('Stop cancels the reply being written', async () => {
    await page.getByLabel('Your message', { exact: true }).fill('Now a reply to interrupt');
    await page.getByRole('button', { name: 'Send' }).click();
    const stop = page.getByRole('button', { name: 'Stop' });
    await stop.waitFor();
    await page.waitForFunction(() => !document.getElementById('stop').disabled,
        null, { timeout: 10000 });
    await stop.click();

    const texts = await watchReply();
    assert.match(texts.at(-1), /cancel/i, 'the reply ends saying it was cancelled');
    assert.deepEqual(page.pageErrors, [], 'the page raised no script error');
});
