// What every ClientMessageFragment must look like, and the ordering rule
// that resuming relies on.
import assert from 'node:assert/strict';

// UUID version 7 (RFC 9562) in its usual text form
export const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;

export function assertFragmentShape(fragment) {
    const what = `fragment ${JSON.stringify(fragment)}`;
    assert.match(String(fragment.id), UUID_V7, `${what}: id is a UUIDv7`);
    assert.match(String(fragment.fragmentId), UUID_V7, `${what}: fragmentId is a UUIDv7`);
    assert.equal(typeof fragment.sender, 'string', `${what}: sender is a string`);
    assert.equal(typeof fragment.text, 'string', `${what}: text is a string`);
    assert.equal(typeof fragment.isFinal, 'boolean', `${what}: isFinal is a boolean`);
}

// UUIDv7 text sorts by creation time, so fragment ids compare as strings
export function assertIncreasingFragmentIds(fragments, what = 'the stream') {
    for (let i = 1; i < fragments.length; i++) {
        const before = fragments[i - 1].fragmentId.toLowerCase();
        const current = fragments[i].fragmentId.toLowerCase();
        assert.ok(before < current,
            `${what}: fragment ids strictly increase (#${i - 1} ${before} then #${i} ${current})`);
    }
}
