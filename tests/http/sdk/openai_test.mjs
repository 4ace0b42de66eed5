// The openai SDK, unchanged, against gemini-pool serve's OpenAI-compatible API
// (run by sdk_test.sh): FRONT_URL, TOKEN, EMU_URL as for genai_test.mjs.
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const client = new OpenAI({ apiKey: process.env.TOKEN, baseURL: `${process.env.FRONT_URL}/v1` });
const EMU = process.env.EMU_URL;
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

test('chat completion', async () => {
  const r = await client.chat.completions.create({
    model: M,
    messages: [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hello from openai' },
      { role: 'assistant', content: 'Hi.' },
      { role: 'user', content: [{ type: 'text', text: 'And now?' }] },
    ],
    max_tokens: 200,
    temperature: 0.2,
  });
  assert.equal(r.object, 'chat.completion');
  assert.match(r.choices[0].message.content, /You asked: /);
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.ok(r.usage.prompt_tokens > 0 && r.usage.total_tokens >= r.usage.prompt_tokens);
});

test('chat completion, streamed, with usage', async () => {
  const stream = await client.chat.completions.create({
    model: M,
    messages: [{ role: 'user', content: 'Stream from openai' }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let chunks = 0;
  let usage = null;
  let finish = null;
  for await (const c of stream) {
    chunks++;
    if (c.choices.length) {
      text += c.choices[0].delta.content ?? '';
      finish = c.choices[0].finish_reason ?? finish;
    }
    if (c.usage) usage = c.usage;
  }
  assert.ok(chunks >= 3, `chunks: ${chunks}`);
  assert.match(text, /You asked: Stream from openai/);
  assert.equal(finish, 'stop');
  assert.ok(usage && usage.completion_tokens > 0);
});

test('an image as a data URL', async () => {
  const png = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';
  const r = await client.chat.completions.create({
    model: M,
    messages: [{
      role: 'user',
      content: [
        { type: 'text', text: 'What is in this picture?' },
        { type: 'image_url', image_url: { url: `data:image/png;base64,${png}` } },
      ],
    }],
  });
  assert.match(r.choices[0].message.content, /You asked: /);
});

test('response_format json_object', async () => {
  const r = await client.chat.completions.create({
    model: M,
    messages: [{ role: 'user', content: 'Answer in JSON' }],
    response_format: { type: 'json_object' },
  });
  assert.ok(r.choices[0].message.content.length > 0);
});

test('tools: a tool call and its result', async () => {
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
  const tools = [{
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'The weather of a city',
      parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
    },
  }];
  const messages = [{ role: 'user', content: 'Weather in Paris?' }];
  const r1 = await client.chat.completions.create({ model: M, messages, tools });
  const msg = r1.choices[0].message;
  assert.equal(r1.choices[0].finish_reason, 'tool_calls');
  assert.equal(msg.tool_calls.length, 1);
  assert.equal(msg.tool_calls[0].function.name, 'get_weather');
  assert.deepEqual(JSON.parse(msg.tool_calls[0].function.arguments), { city: 'Paris' });
  messages.push(msg);
  messages.push({ role: 'tool', tool_call_id: msg.tool_calls[0].id, content: '{"temp_c": 21}' });
  const r2 = await client.chat.completions.create({ model: M, messages, tools });
  assert.match(r2.choices[0].message.content, /You asked: /);
});

test('embeddings', async () => {
  const r = await client.embeddings.create({ model: 'gemini-embedding-001', input: ['one', 'two'] });
  assert.equal(r.data.length, 2);
  assert.ok(r.data[0].embedding.length > 0);
  assert.notDeepEqual(r.data[0].embedding, r.data[1].embedding);
});

test('models', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.ok(ids.includes(M), ids.join(','));
});

test('errors in OpenAI format: unknown model 404, bad token 401', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'gpt-nope', messages: [{ role: 'user', content: 'x' }] }),
    (err) => err.status === 404 && /does not exist/.test(err.message),
  );
  const bad = new OpenAI({ apiKey: 'not-a-token-of-this-pool', baseURL: `${process.env.FRONT_URL}/v1` });
  await assert.rejects(bad.models.list(), (err) => err.status === 401);
});

let failed = 0;
for (const [name, fn] of tests) {
  try {
    await fn();
    console.log(`ok   openai: ${name}`);
  } catch (err) {
    failed++;
    console.log(`FAIL openai: ${name}\n     ${String(err.stack ?? err).split('\n').slice(0, 4).join('\n     ')}`);
  }
}
process.exit(failed ? 1 : 0);
