// Drives scripts/fake-gemini with Google's official SDK, @google/genai.
//
// Run through sdk_test.sh, which installs the SDK, starts the emulator with the keys
// file below and sets EMU_URL. By hand:
//   EMU_URL=http://127.0.0.1:PORT EMU_TOKEN=$(cat PORT_FILE.token) node tests/emulator/sdk_test.mjs
// with an emulator whose keys file holds
//   {"projects": {"proj-sdk": {}}, "keys": [
//     {"key": "FAKE-KEY-SDK-0001", "name": "sdk1", "project": "proj-sdk"}]}

import assert from 'node:assert/strict';
import { ApiError, GoogleGenAI } from '@google/genai';

const BASE = process.env.EMU_URL;
const KEY = process.env.EMU_KEY ?? 'FAKE-KEY-SDK-0001';
const TOKEN = process.env.EMU_TOKEN ?? ''; // the control API's token (PORT_FILE.token)
if (!BASE) {
  console.error('sdk_test.mjs: set EMU_URL to the emulator (http://127.0.0.1:PORT)');
  process.exit(2);
}

const ai = new GoogleGenAI({ apiKey: KEY, apiVersion: 'v1beta', httpOptions: { baseUrl: BASE } });

async function ctl(method, path, body) {
  const resp = await fetch(`${BASE}/_emu/${path}`, {
    method,
    headers: { 'content-type': 'application/json', 'x-emu-token': TOKEN },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  assert.equal(resp.status, 200, `control ${method} ${path}`);
  return resp.json();
}

async function expectApiError(promise, status, pattern) {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof ApiError, `expected an ApiError, got ${err}`);
    assert.equal(err.status, status);
    if (pattern) assert.match(err.message, pattern);
    return err;
  }
  assert.fail(`expected an ApiError with status ${status}`);
}

const tests = [];
const test = (name, fn) => tests.push([name, fn]);

test('generateContent returns the deterministic answer', async () => {
  const prompt = 'Hello from the official SDK';
  const resp = await ai.models.generateContent({ model: 'gemini-2.5-flash', contents: prompt });
  assert.match(resp.text, /^\[fake-gemini model=gemini-2\.5-flash key=sdk1 project=proj-sdk sha=[0-9a-f]{12}\] You asked: Hello from the official SDK/);
  assert.equal(resp.modelVersion, 'gemini-2.5-flash');
  assert.ok(resp.responseId);
  assert.equal(resp.candidates[0].finishReason, 'STOP');
  assert.equal(resp.usageMetadata.promptTokenCount, Math.ceil(prompt.length / 4));
  const again = await ai.models.generateContent({ model: 'gemini-2.5-flash', contents: prompt });
  assert.equal(again.text, resp.text);
});

test('generateContentStream yields every chunk; the text equals the plain answer', async () => {
  const args = { model: 'gemini-3-flash-preview', contents: 'Stream this, please',
                 config: { systemInstruction: 'be brief', tools: [{ googleSearch: {} }] } };
  const plain = await ai.models.generateContent(args);
  const stream = await ai.models.generateContentStream(args);
  const pieces = [];
  let last;
  for await (const chunk of stream) {
    assert.equal(chunk.modelVersion, 'gemini-3-flash-preview');
    pieces.push(chunk.text);
    last = chunk;
  }
  assert.ok(pieces.length >= 3, `several chunks (got ${pieces.length})`);
  assert.equal(pieces.join(''), plain.text);
  assert.match(plain.text, /system="be brief"/);
  assert.match(plain.text, /tools=googleSearch/);
  assert.equal(last.candidates[0].finishReason, 'STOP');
  assert.equal(last.usageMetadata.candidatesTokenCount, plain.usageMetadata.candidatesTokenCount);
});

test('countTokens agrees with usageMetadata.promptTokenCount', async () => {
  const contents = 'Count me: héllo wörld ✓ and some more words';
  const counted = await ai.models.countTokens({ model: 'gemini-2.5-flash', contents });
  const resp = await ai.models.generateContent({ model: 'gemini-2.5-flash', contents });
  assert.equal(counted.totalTokens, resp.usageMetadata.promptTokenCount);
  assert.equal(counted.totalTokens, Math.ceil(Buffer.byteLength(contents) / 4));
});

test('models.list iterates every page and terminates', async () => {
  const raw = await fetch(`${BASE}/v1beta/models?pageSize=1000`, {
    headers: { 'x-goog-api-key': KEY } }).then((r) => r.json());
  const names = [];
  const pager = await ai.models.list({ config: { pageSize: 3 } });
  for await (const model of pager) {
    names.push(model.name);
    assert.ok(names.length <= raw.models.length, 'the pager does not loop');
  }
  assert.deepEqual(names, raw.models.map((m) => m.name));
  const lists = (await ctl('GET', 'log')).filter((e) => e.action === 'list');
  assert.equal(lists.length, 1 + Math.ceil(raw.models.length / 3));
});

test('models.get', async () => {
  const model = await ai.models.get({ model: 'gemini-2.5-flash' });
  assert.equal(model.name, 'models/gemini-2.5-flash');
  assert.ok(model.inputTokenLimit > 0);
  assert.ok(model.supportedActions.includes('generateContent'));
});

test('thought summaries and images come through', async () => {
  const resp = await ai.models.generateContent({
    model: 'gemini-3-flash-preview', contents: 'think first',
    config: { thinkingConfig: { includeThoughts: true, thinkingLevel: 'LOW' } } });
  const parts = resp.candidates[0].content.parts;
  assert.equal(parts[0].thought, true);
  assert.ok(!resp.text.includes(parts[0].text), 'the text getter skips thoughts');
  const image = await ai.models.generateContent({ model: 'gemini-2.5-flash-image',
                                                  contents: 'draw a pool' });
  const inline = image.candidates[0].content.parts.find((p) => p.inlineData);
  assert.equal(inline.inlineData.mimeType, 'image/png');
  assert.equal(Buffer.from(inline.inlineData.data, 'base64').subarray(1, 4).toString(), 'PNG');
});

test('a 429 surfaces as ApiError with status 429', async () => {
  // gemini-3.1-pro-preview is not on the free tier: limit 0.
  await expectApiError(ai.models.generateContent({ model: 'gemini-3.1-pro-preview',
                                                   contents: 'x' }), 429, /limit: 0/);
  // gemini-3-flash-preview allows 5 requests a minute; earlier tests used some.
  await ctl('POST', 'reset');
  for (let i = 0; i < 5; i++) {
    await ai.models.generateContent({ model: 'gemini-3-flash-preview', contents: `n${i}` });
  }
  const err = await expectApiError(
    ai.models.generateContent({ model: 'gemini-3-flash-preview', contents: 'one too many' }),
    429, /Please retry in/);
  assert.match(err.message, /GenerateRequestsPerMinutePerProjectPerModel-FreeTier/);
  await expectApiError(ai.models.generateContentStream({ model: 'gemini-3-flash-preview',
                                                         contents: 'stream too' }), 429);
});

test('other errors: bad key 400, unknown model 404, error inside a 200 stream', async () => {
  const bad = new GoogleGenAI({ apiKey: 'FAKE-KEY-SDK-UNKNOWN', apiVersion: 'v1beta',
                                httpOptions: { baseUrl: BASE } });
  await expectApiError(bad.models.generateContent({ model: 'gemini-2.5-flash', contents: 'x' }),
                       400, /API_KEY_INVALID/);
  await expectApiError(ai.models.generateContent({ model: 'gemini-0-nope', contents: 'x' }),
                       404, /is not found for API version v1beta/);
  await ctl('POST', 'faults', { scope: 'global', p_midstream: 1, midstream_form: 'data' });
  const chunks = [];
  await assert.rejects(async () => {
    for await (const chunk of await ai.models.generateContentStream({
      model: 'gemini-2.5-flash', contents: 'break midway' })) {
      chunks.push(chunk);
    }
  }, (err) => err instanceof ApiError && [500, 503].includes(err.status));
  assert.equal(chunks.length, 1, 'one good chunk before the error');
  await ctl('POST', 'faults', { scope: 'global', clear: true });
});

test('the SDK sends the key in a header, never in the URL', async () => {
  const log = await ctl('GET', 'log');
  assert.ok(log.length > 0);
  for (const entry of log) {
    assert.equal(entry.key_in_url, false, entry.path);
    assert.ok(!entry.path.includes('key='), entry.path);
  }
  const sdkEntries = log.filter((e) => (e.x_goog_api_client ?? '').includes('google-genai-sdk'));
  assert.ok(sdkEntries.length > 0, 'x-goog-api-client names the SDK');
  assert.ok(!JSON.stringify(log).includes(KEY));
});

let failed = 0;
await ctl('POST', 'reset');
for (const [name, fn] of tests) {
  const started = Date.now();
  try {
    await fn();
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (err) {
    failed += 1;
    console.log(`FAIL ${name}\n     ${String(err?.stack ?? err).split('\n').join('\n     ')}`);
  }
}
console.log(`${tests.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
