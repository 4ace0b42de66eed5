// @google/genai, unchanged, against gemini-pool serve (run by sdk_test.sh):
// FRONT_URL (the front), TOKEN (a caller token), EMU_URL (the emulator behind it).
import assert from 'node:assert/strict';
import { ApiError, GoogleGenAI, Type } from '@google/genai';

const FRONT = process.env.FRONT_URL;
const EMU = process.env.EMU_URL;
const ai = new GoogleGenAI({ apiKey: process.env.TOKEN, httpOptions: { baseUrl: FRONT } });
const M = 'gemini-2.5-flash';

async function replay(spec) {
  const resp = await fetch(`${EMU}/_emu/replay`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-emu-token': process.env.EMU_TOKEN },
    body: JSON.stringify(spec),
  });
  assert.equal(resp.status, 200);
}

const tests = [];
const test = (name, fn) => tests.push([name, fn]);

test('generateContent', async () => {
  const resp = await ai.models.generateContent({ model: M, contents: 'Hello through the pool' });
  assert.match(resp.text, /You asked: Hello through the pool/);
  assert.equal(resp.candidates[0].finishReason, 'STOP');
  assert.ok(resp.usageMetadata.promptTokenCount > 0);
});

test('generateContentStream', async () => {
  let text = '';
  let chunks = 0;
  for await (const c of await ai.models.generateContentStream({ model: M, contents: 'Stream it' })) {
    text += c.text ?? '';
    chunks++;
  }
  assert.ok(chunks >= 2, `chunks: ${chunks}`);
  assert.match(text, /You asked: Stream it/);
});

test('chat with history', async () => {
  const chat = ai.chats.create({
    model: M,
    history: [
      { role: 'user', parts: [{ text: 'My name is Ada.' }] },
      { role: 'model', parts: [{ text: 'Hello Ada.' }] },
    ],
  });
  const r1 = await chat.sendMessage({ message: 'What is my name?' });
  assert.match(r1.text, /You asked: /);
  const r2 = await chat.sendMessage({ message: 'And again?' });
  assert.match(r2.text, /You asked: /);
  assert.equal(chat.getHistory().length, 6);
});

test('countTokens', async () => {
  const r = await ai.models.countTokens({ model: M, contents: 'count these tokens please' });
  assert.ok(r.totalTokens > 0);
});

test('embedContent (one and several)', async () => {
  const one = await ai.models.embedContent({ model: 'gemini-embedding-001', contents: 'embed me' });
  assert.equal(one.embeddings.length, 1);
  assert.ok(one.embeddings[0].values.length > 0);
  const many = await ai.models.embedContent({
    model: 'gemini-embedding-001',
    contents: ['one', 'two', 'three'],
  });
  assert.equal(many.embeddings.length, 3);
});

test('function calling round trip', async () => {
  const getWeather = {
    name: 'get_weather',
    description: 'The weather of a city',
    parameters: { type: Type.OBJECT, properties: { city: { type: Type.STRING } }, required: ['city'] },
  };
  await replay({
    status: 200,
    model: M,
    action: 'generateContent',
    count: 1,
    body_json: {
      candidates: [{
        content: { role: 'model', parts: [{ functionCall: { name: 'get_weather', args: { city: 'Paris' } } }] },
        finishReason: 'STOP',
        index: 0,
      }],
      usageMetadata: { promptTokenCount: 20, candidatesTokenCount: 5, totalTokenCount: 25 },
    },
  });
  const contents = [{ role: 'user', parts: [{ text: 'Weather in Paris?' }] }];
  const config = { tools: [{ functionDeclarations: [getWeather] }] };
  const r1 = await ai.models.generateContent({ model: M, contents, config });
  assert.equal(r1.functionCalls.length, 1);
  assert.equal(r1.functionCalls[0].name, 'get_weather');
  assert.deepEqual(r1.functionCalls[0].args, { city: 'Paris' });
  contents.push(r1.candidates[0].content);
  contents.push({ role: 'user', parts: [{ functionResponse: { name: 'get_weather', response: { temp_c: 21 } } }] });
  const r2 = await ai.models.generateContent({ model: M, contents, config });
  assert.match(r2.text, /You asked: /);
});

test('a wrong token is refused with 401', async () => {
  const bad = new GoogleGenAI({ apiKey: 'not-a-token-of-this-pool', httpOptions: { baseUrl: FRONT } });
  try {
    await bad.models.generateContent({ model: M, contents: 'x' });
    assert.fail('expected a 401');
  } catch (err) {
    assert.ok(err instanceof ApiError, String(err));
    assert.equal(err.status, 401);
  }
});

let failed = 0;
for (const [name, fn] of tests) {
  try {
    await fn();
    console.log(`ok   genai: ${name}`);
  } catch (err) {
    failed++;
    console.log(`FAIL genai: ${name}\n     ${String(err.stack ?? err).split('\n').slice(0, 4).join('\n     ')}`);
  }
}
process.exit(failed ? 1 : 0);
