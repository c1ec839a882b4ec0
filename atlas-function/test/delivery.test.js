// forwardChange and lakeDeliver against the real handler: retries, Retry-After, attempts
// without an answer, signatures (valid, wrong, rotated) and permanent refusals.

"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { EJSON } = require("bson");
const {
  startHandler,
  startProxy,
  runtimeFor,
  deadLetters,
  sampleEvent,
  insertEvent,
  SECRET,
  FUNCTION_KEY,
} = require("../harness");

const SIGNATURE = /^t=(\d+)(,v1=[0-9a-f]{64})+$/;

async function signedHandler(t) {
  const handler = await startHandler({ INGEST_HMAC_SECRET: SECRET, RECORD_ENCODING: "canonical" });
  t.after(() => handler.stop());
  return handler;
}

async function proxy(t, target, decide) {
  const started = await startProxy(target, decide);
  t.after(() => started.close());
  return started;
}

const unavailable = {
  status: 503,
  headers: { "Content-Type": "application/json", "Retry-After": "0" },
  body: '{"error":"storage_unavailable","detail":"the lake could not store a record"}',
};

test("a handler that answers 503 twice then 200 gets the event stored once", async (t) => {
  const handler = await signedHandler(t);
  const flaky = await proxy(t, handler.url, (n) => (n <= 2 ? unavailable : "forward"));
  const runtime = runtimeFor(flaky.url);
  const event = sampleEvent("insert.json");

  const result = await runtime.call("forwardChange", event);

  assert.equal(result.delivered, true);
  assert.equal(result.attempts, 3);
  assert.equal(flaky.seen.length, 3);
  const files = handler.files();
  assert.equal(files.size, 1, "one file, however many attempts");
  assert.equal(deadLetters(runtime).documents.length, 0);
  // Every attempt: the same canonical body, the function key, a fresh signature.
  const canonical = EJSON.stringify(event, { relaxed: false });
  for (const request of flaky.seen) {
    assert.equal(request.body, canonical);
    assert.equal(request.headers["content-type"], "application/json");
    assert.equal(request.headers["x-functions-key"], FUNCTION_KEY);
    assert.match(request.headers["x-ingest-signature"], SIGNATURE);
  }
  // The record is the event's document, every type kept.
  const record = EJSON.parse([...files.values()][0], { relaxed: false });
  assert.equal(record.eventId, event._id._data);
  assert.deepEqual(record.data, event.fullDocument);
});

test("Retry-After is honoured", async (t) => {
  const handler = await signedHandler(t);
  const throttled = await proxy(t, handler.url, (n) =>
    n === 1 ? { status: 429, headers: { "Retry-After": "1" }, body: "{}" } : "forward"
  );
  const runtime = runtimeFor(throttled.url);
  const started = Date.now();
  const result = await runtime.call("forwardChange", insertEvent(1));
  const waited = Date.now() - started;
  assert.equal(result.attempts, 2);
  // (950: timers and Date.now() may disagree by a millisecond; the backoff alone is < 50 ms.)
  assert.ok(waited >= 950, `retried after ${waited} ms, before the 1 s Retry-After`);
  assert.equal(handler.files().size, 1);
});

test("an attempt without an answer is abandoned and retried", async (t) => {
  const handler = await signedHandler(t);
  const stalling = await proxy(t, handler.url, (n) => (n === 1 ? "hang" : "forward"));
  const runtime = runtimeFor(stalling.url, { options: { attemptTimeoutMs: 800 } });
  const result = await runtime.call("forwardChange", insertEvent(2));
  assert.equal(result.attempts, 2);
  assert.equal(handler.files().size, 1);
});

test("a wrong secret gets 401 and nothing is written; the event is kept", async (t) => {
  const handler = await signedHandler(t);
  for (const [why, values] of [
    ["wrong secret", { lakeSigningSecret: "not-the-handlers-secret-0123456789" }],
    ["no secret at all", { lakeSigningSecret: undefined }],
  ]) {
    const runtime = runtimeFor(handler.url, { values });
    const event = insertEvent(3);
    await assert.rejects(runtime.call("forwardChange", event), /HTTP 401 invalid_signature/, why);
    assert.equal(runtime.requests.length, 1, `${why}: a 401 is not retried`);
    const [letter] = deadLetters(runtime).documents;
    assert.equal(letter._id, event._id._data, why);
    assert.equal(letter.status, 401, why);
    assert.equal(letter.permanent, true, why);
    assert.equal(letter.attempts, 1, why);
    assert.equal(letter.body, EJSON.stringify(event, { relaxed: false }), why);
  }
  assert.equal(handler.files().size, 0, "nothing may be written");
});

test("a sender rotating its secret signs with both and is accepted", async (t) => {
  const handler = await signedHandler(t);
  const runtime = runtimeFor(handler.url, {
    values: { lakeSigningSecret: "the-secret-being-retired-012345", lakeSigningSecretNext: SECRET },
  });
  const result = await runtime.call("forwardChange", insertEvent(4));
  assert.equal(result.delivered, true);
  const header = runtime.requests[0].headers["X-Ingest-Signature"];
  assert.equal(header.split(",v1=").length, 3, `two signatures: ${header}`);
  assert.equal(handler.files().size, 1);
});

test("other 4xx are permanent: one attempt, then the dead-letter collection", async (t) => {
  const handler = await signedHandler(t);
  const runtime = runtimeFor(handler.url);
  // An insert without fullDocument cannot come from Atlas: the handler refuses it (400).
  const event = insertEvent(5);
  delete event.fullDocument;
  await assert.rejects(runtime.call("forwardChange", event), /HTTP 400 invalid_event/);
  assert.equal(runtime.requests.length, 1);
  const [letter] = deadLetters(runtime).documents;
  assert.equal(letter.status, 400);
  assert.equal(letter.operationType, "insert");
  assert.deepEqual(letter.ns, { db: "sample_mflix", coll: "movies" });
  assert.match(letter.response, /invalid_event/);
  assert.ok(letter.deadLetteredAt instanceof Date && letter.nextAttemptAt instanceof Date);
  assert.equal(handler.files().size, 0);
});

test("retries stop at the time budget and the event is dead-lettered", async (t) => {
  const handler = await signedHandler(t);
  const broken = await proxy(t, handler.url, () => unavailable);
  const runtime = runtimeFor(broken.url, { options: { retryBudgetMs: 400 } });
  const started = Date.now();
  await assert.rejects(runtime.call("forwardChange", insertEvent(6)), /HTTP 503 storage_unavailable.*gave up/);
  const elapsed = Date.now() - started;
  assert.ok(elapsed < 2000, `took ${elapsed} ms for a 400 ms budget`);
  const [letter] = deadLetters(runtime).documents;
  assert.equal(letter.permanent, false);
  assert.ok(letter.attempts >= 3, `${letter.attempts} attempts`);
  assert.equal(letter.attempts, broken.seen.length);
  // The trigger log names the event and where it is kept, never its contents.
  assert.equal(handler.files().size, 0);
});

test("without a URL the event is still kept", async (t) => {
  const runtime = runtimeFor(undefined, { values: { lakeIngestUrl: undefined } });
  await assert.rejects(runtime.call("forwardChange", insertEvent(7)), /lakeIngestUrl is not set/);
  assert.equal(deadLetters(runtime).documents.length, 1);
  assert.equal(runtime.requests.length, 0);
});

test("if even the dead-letter collection fails, the error says the event is lost", async (t) => {
  const runtime = runtimeFor(undefined, { values: { lakeIngestUrl: undefined } });
  deadLetters(runtime).failWith = new Error("cluster unavailable");
  await assert.rejects(runtime.call("forwardChange", insertEvent(8)), /LOST: cluster unavailable/);
});

test("bad lakeOptions fall back to their defaults and are reported", async (t) => {
  const runtime = runtimeFor("http://127.0.0.1:9/unused", {
    options: { batchSize: 0, retryBaseMs: "fast", colour: "blue" },
  });
  const options = await runtime.call("lakeConfig");
  assert.equal(options.batchSize, 100);
  assert.equal(options.retryBaseMs, 1000);
  assert.equal(options.problems.length, 3, options.problems.join("\n"));
});
