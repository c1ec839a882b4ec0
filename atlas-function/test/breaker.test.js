// The circuit breaker: once one event has spent its retries on an endpoint that is down,
// the next events are dead-lettered at once (not one request), so a long outage cannot
// back the trigger up; one event tests the endpoint again after breakerOpenMs, and
// lakeRedrive closes the breaker once the endpoint answers.

"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const {
  startHandler,
  deadUrl,
  runtimeFor,
  deadLetters,
  buffer,
  state,
  insertEvent,
  SECRET,
} = require("../harness");

async function signedHandler(t) {
  const handler = await startHandler({ INGEST_HMAC_SECRET: SECRET });
  t.after(() => handler.stop());
  return handler;
}

function breakerOf(runtime) {
  return state(runtime).documents.find((document) => document._id === "endpoint");
}

/** Lets the open breaker's time run out, as if breakerOpenMs had passed. */
function expire(runtime) {
  breakerOf(runtime).downUntil = new Date(Date.now() - 1);
}

const MARKED_DOWN = /failed after 0 attempt\(s\): endpoint marked down until \d{4}-\d\d-\d\dT[\d:.]+Z after: network: /;

test("an endpoint that is down opens the breaker: the next events are dead-lettered at once, without a request", async (t) => {
  const runtime = runtimeFor(await deadUrl(), { options: { retryBudgetMs: 600 } });
  const before = Date.now();
  await assert.rejects(runtime.call("forwardChange", insertEvent(1)), /failed after \d+ attempt\(s\): network/);
  const opened = breakerOf(runtime);
  assert.ok(opened, "the first event's spent retries open the breaker");
  assert.ok(runtime.requests.length >= 2, "the first event retried");
  assert.ok(opened.downUntil instanceof Date && opened.openedAt instanceof Date);
  assert.ok(opened.downUntil.getTime() >= before + 60000, "down for breakerOpenMs (60 s by default)");
  assert.ok(opened.downUntil.getTime() <= Date.now() + 60000);
  assert.match(opened.reason, /^network: /);

  const requests = runtime.requests.length;
  const started = Date.now();
  for (const n of [2, 3, 4]) {
    await assert.rejects(runtime.call("forwardChange", insertEvent(n)), MARKED_DOWN);
  }
  const elapsed = Date.now() - started;
  assert.equal(runtime.requests.length, requests, "not one request while the breaker is open");
  assert.ok(elapsed < 600, `three events took ${elapsed} ms, less than one retry budget`);
  const letters = deadLetters(runtime).documents;
  assert.equal(letters.length, 4, "every event is kept");
  for (const letter of letters.slice(1)) {
    assert.equal(letter.attempts, 0);
    assert.equal(letter.permanent, false);
    assert.equal(letter.status, null);
    assert.match(letter.error, /^endpoint marked down until .* after: network: /);
  }

  // Back up: lakeRedrive delivers everything and closes the breaker.
  const handler = await signedHandler(t);
  runtime.values.lakeIngestUrl = handler.url;
  const report = await runtime.call("lakeRedrive");
  assert.deepEqual(report.deadLetters, { sent: 4, failed: 0, stoppedBy: null });
  assert.equal(report.breaker, "closed");
  assert.equal(breakerOf(runtime), undefined);
  assert.equal(deadLetters(runtime).documents.length, 0);
  assert.equal(handler.files().size, 4);
  // Closed: the next event goes straight to the endpoint.
  assert.equal((await runtime.call("forwardChange", insertEvent(5))).delivered, true);
  assert.equal(handler.files().size, 5);
});

test("once downUntil has passed, one event tests the endpoint: failure re-opens the breaker, success closes it", async (t) => {
  const runtime = runtimeFor(await deadUrl(), { options: { retryBudgetMs: 300 } });
  await assert.rejects(runtime.call("forwardChange", insertEvent(1)));
  expire(runtime);

  // Two events at once: one tests the endpoint (and retries), the other is not held up
  // behind it but dead-lettered at once.
  const requests = runtime.requests.length;
  const results = await Promise.allSettled([2, 3].map((n) => runtime.call("forwardChange", insertEvent(n))));
  const reasons = results.map((result) => {
    assert.equal(result.status, "rejected");
    return result.reason.message;
  });
  const tested = reasons.filter((reason) => /failed after [1-9]\d* attempt\(s\): network/.test(reason));
  const skipped = reasons.filter((reason) => MARKED_DOWN.test(reason));
  assert.equal(tested.length, 1, reasons.join("\n"));
  assert.equal(skipped.length, 1, reasons.join("\n"));
  assert.ok(runtime.requests.length > requests, "the endpoint was tried again");
  const reopened = breakerOf(runtime);
  assert.ok(reopened.downUntil.getTime() > Date.now() + 50000, "the failed test re-opens it");
  assert.equal(reopened.probeStartedAt, undefined);
  assert.equal(deadLetters(runtime).documents.length, 3);

  // The endpoint is back; after downUntil the next event is delivered and closes it.
  const handler = await signedHandler(t);
  runtime.values.lakeIngestUrl = handler.url;
  expire(runtime);
  const result = await runtime.call("forwardChange", insertEvent(4));
  assert.equal(result.delivered, true);
  assert.equal(breakerOf(runtime), undefined);
  assert.equal(handler.files().size, 1);
});

test("a refusal for good (400) does not open the breaker", async (t) => {
  const handler = await signedHandler(t);
  const runtime = runtimeFor(handler.url);
  const bad = insertEvent(1);
  delete bad.fullDocument;
  await assert.rejects(runtime.call("forwardChange", bad), /HTTP 400 invalid_event/);
  assert.equal(state(runtime).documents.length, 0);
  assert.equal((await runtime.call("forwardChange", insertEvent(2))).delivered, true);
  assert.equal(runtime.requests.length, 2);
  // Nor does a failure before any request (no URL): it says nothing about the endpoint.
  runtime.values.lakeIngestUrl = undefined;
  await assert.rejects(runtime.call("forwardChange", insertEvent(3)), /lakeIngestUrl is not set/);
  assert.equal(state(runtime).documents.length, 0);
});

test("breakerOpenMs 0 turns the breaker off", async () => {
  const runtime = runtimeFor(await deadUrl(), { options: { retryBudgetMs: 200, breakerOpenMs: 0 } });
  for (const n of [1, 2]) {
    await assert.rejects(runtime.call("forwardChange", insertEvent(n)), /failed after \d+ attempt\(s\): network/);
  }
  for (const letter of deadLetters(runtime).documents) {
    assert.ok(letter.attempts >= 2, `each event retried: ${letter.attempts}`);
  }
  await runtime.call("lakeRedrive");
  assert.deepEqual(state(runtime).calls, {}, "the state collection is never touched");
});

test("a breaker that cannot be read or written costs no event", async (t) => {
  const handler = await signedHandler(t);
  const runtime = runtimeFor(handler.url, { options: { retryBudgetMs: 200 } });
  state(runtime).failWith = new Error("state unavailable");
  assert.equal((await runtime.call("forwardChange", insertEvent(1))).delivered, true);
  assert.equal(handler.files().size, 1);
  assert.ok(runtime.logs.some((line) => line.level === "error" && /lake breaker check failed: state unavailable/.test(line.text)));

  // Down, with the breaker unusable: the event retries and is dead-lettered as without it.
  runtime.values.lakeIngestUrl = await deadUrl();
  await assert.rejects(runtime.call("forwardChange", insertEvent(2)), /failed after \d+ attempt\(s\): network.*kept in/);
  assert.equal(deadLetters(runtime).documents.length, 1);
  assert.ok(runtime.logs.some((line) => /lake breaker open failed: state unavailable/.test(line.text)));
});

test("lakeRedrive re-opens the breaker when the endpoint is still down", async () => {
  const runtime = runtimeFor(await deadUrl(), { options: { retryBudgetMs: 100, redriveDeliveryBudgetMs: 100 } });
  await assert.rejects(runtime.call("forwardChange", insertEvent(1)));
  expire(runtime);
  const report = await runtime.call("lakeRedrive");
  assert.match(report.deadLetters.stoppedBy, /network/);
  assert.equal(report.breaker, "opened");
  assert.ok(breakerOf(runtime).downUntil.getTime() > Date.now() + 50000);
});

test("batching mode buffers events without reading the breaker", async () => {
  const runtime = runtimeFor(await deadUrl(), { options: { batching: true } });
  await state(runtime).insertOne({ _id: "endpoint", downUntil: new Date(Date.now() + 60000), reason: "test" });
  const calls = { ...state(runtime).calls };
  assert.equal((await runtime.call("forwardChange", insertEvent(1))).buffered, true);
  assert.deepEqual(state(runtime).calls, calls);
  assert.equal(buffer(runtime).documents.length, 1);
  assert.equal(runtime.requests.length, 0);
});

test("bad breaker options fall back to their defaults and are reported", async () => {
  const runtime = runtimeFor("http://127.0.0.1:9/unused", { options: { stateCollection: "", breakerOpenMs: -1 } });
  const options = await runtime.call("lakeConfig");
  assert.equal(options.stateCollection, "state");
  assert.equal(options.breakerOpenMs, 60000);
  assert.equal(options.problems.length, 2, options.problems.join("\n"));
});
