// The official OpenAI Node SDK (npm `openai`, pinned in package.json) against a running `zeroinfer serve`
// (started by run.sh: the demo model with Zephyr's chat template added, server.max_batch_size 1,
// server.max_queue 1, debug.step_delay_ms 20, a bearer token). Every check is a real SDK call; errors come back as
// the SDK's own error classes, with maxRetries: 0 so that a retry cannot hide them.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import OpenAI from 'openai';

const { ZI_BINARY, ZI_GRPC, ZI_HTTP, ZI_METRICS, ZI_TOKEN, ZI_STEP_MS } = process.env;
const client = new OpenAI({ baseURL: `http://${ZI_HTTP}/v1`, apiKey: ZI_TOKEN, maxRetries: 0 });
const prompt = 'In the beginning';
const stepMs = Number(ZI_STEP_MS);

// What gRPC answers for the same greedy request (zeroinfer client prints the text to stdout).
function grpcText(maxTokens) {
  return execFileSync(ZI_BINARY, ['client', '--server', ZI_GRPC, '--token', ZI_TOKEN, '--max-new-tokens',
                                  String(maxTokens), prompt], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
}

async function metric(series) {
  const text = await (await fetch(`http://${ZI_METRICS}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

async function eventually(pred, what, ms = 20000) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await pred()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail(`never happened: ${what}`);
}

const model = (await client.models.list()).data[0].id;
const tests = {
  async 'a completion and a streamed one equal gRPC for the same greedy request'() {
    const expected = grpcText(16);
    const plain = await client.completions.create({ model, prompt, max_tokens: 16, temperature: 0 });
    assert.equal(plain.choices[0].text, expected);
    assert.equal(plain.usage.completion_tokens, 16);
    let streamed = '';
    let usage;
    const stream = await client.completions.create({ model, prompt, max_tokens: 16, temperature: 0, stream: true,
                                                      stream_options: { include_usage: true } });
    for await (const chunk of stream) {
      if (chunk.choices.length) streamed += chunk.choices[0].text;
      if (chunk.usage) usage = chunk.usage;
    }
    assert.equal(streamed, expected);
    assert.equal(usage.completion_tokens, 16);
    assert.equal(usage.total_tokens, usage.prompt_tokens + 16);
  },

  async 'a chat completion'() {
    const r = await client.chat.completions.create({ model, max_tokens: 8, temperature: 0,
      messages: [{ role: 'system', content: 'You are the King James Bible.' }, { role: 'user', content: 'Genesis?' }] });
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.equal(typeof r.choices[0].message.content, 'string');
    assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
    assert.ok(r.usage.prompt_tokens > 5);
    let text = '';
    const stream = await client.chat.completions.create({ model, max_tokens: 8, temperature: 0, stream: true,
      messages: [{ role: 'system', content: 'You are the King James Bible.' }, { role: 'user', content: 'Genesis?' }] });
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    assert.equal(text, r.choices[0].message.content);
  },

  async 'stop and max_tokens'() {
    const full = (await client.completions.create({ model, prompt, max_tokens: 12, temperature: 0 })).choices[0];
    assert.equal(full.finish_reason, 'length');
    const short = await client.completions.create({ model, prompt, max_tokens: 3, temperature: 0 });
    assert.equal(short.usage.completion_tokens, 3);
    assert.ok(full.text.startsWith(short.choices[0].text));
    const word = full.text.trim().split(/\s+/)[1];
    const stopped = await client.completions.create({ model, prompt, max_tokens: 12, temperature: 0, stop: [word] });
    assert.equal(stopped.choices[0].text, full.text.slice(0, full.text.indexOf(word)));
    assert.equal(stopped.choices[0].finish_reason, 'stop');
  },

  async '400 and 401 through the SDK error classes'() {
    await assert.rejects(client.completions.create({ model, prompt, max_tokens: 2, n: 2 }), (e) => {
      assert.ok(e instanceof OpenAI.BadRequestError, String(e));
      assert.equal(e.status, 400);
      assert.equal(e.param, 'n');
      return true;
    });
    const stranger = new OpenAI({ baseURL: `http://${ZI_HTTP}/v1`, apiKey: 'not-the-token', maxRetries: 0 });
    await assert.rejects(stranger.completions.create({ model, prompt, max_tokens: 2 }), (e) => {
      assert.ok(e instanceof OpenAI.AuthenticationError, String(e));
      assert.equal(e.status, 401);
      return true;
    });
  },

  async '429 when the queue is full'() {
    // One request runs (max_batch_size 1), one waits (max_queue 1): the third is refused.
    const running = await client.completions.create({ model, prompt, max_tokens: 200, stream: true, ignore_eos: true });
    const it = running[Symbol.asyncIterator]();
    await it.next();
    const waiting = client.completions.create({ model, prompt, max_tokens: 2, stream: true }).catch((e) => e);
    await eventually(async () => (await metric('zeroinfer_requests_waiting')) === 1, 'a request waiting');
    await assert.rejects(client.completions.create({ model, prompt, max_tokens: 2 }), (e) => {
      assert.ok(e instanceof OpenAI.RateLimitError, String(e));
      assert.equal(e.status, 429);
      assert.equal(e.headers.get('retry-after'), '1');
      return true;
    });
    running.controller.abort();
    const second = await waiting;  // runs once the first is gone
    if (!(second instanceof Error)) for await (const _ of second) { /* drain */ }
    await eventually(async () => (await metric('zeroinfer_requests_running')) === 0, 'requests_running back to 0');
  },

  async 'an aborted stream frees its slot'() {
    const maxTokens = 200;
    const started = Date.now();
    const first = await client.completions.create({ model, prompt, max_tokens: maxTokens, stream: true,
                                                     ignore_eos: true });
    for await (const chunk of first) {
      if (chunk.choices[0]?.text !== undefined) break;  // leaving the loop aborts the request
    }
    const second = await client.completions.create({ model, prompt, max_tokens: 2, stream: true });
    let firstToken;
    for await (const chunk of second) {
      firstToken ??= Date.now();
    }
    // With one slot, the second request could only start because the first was cancelled.
    assert.ok(firstToken - started < maxTokens * stepMs,
              `second request's first token after ${firstToken - started} ms`);
    await eventually(async () => (await metric('zeroinfer_requests_running')) === 0, 'requests_running back to 0');
    assert.ok((await metric('zeroinfer_requests_total{finish_reason="cancelled"}')) >= 1);
  },
};

let failed = 0;
for (const [name, fn] of Object.entries(tests)) {
  try {
    await fn();
    console.log(`ok   ${name}`);
  } catch (e) {
    failed += 1;
    console.log(`FAIL ${name}\n${e.stack ?? e}`);
  }
}
console.log(failed ? `${failed} failed` : 'all passed');
process.exit(failed ? 1 : 0);
