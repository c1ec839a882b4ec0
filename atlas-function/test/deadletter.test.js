// Nothing is lost while the lake endpoint is down: the trigger's function dead-letters the
// event, the scheduled lakeRedrive sends it once the endpoint is back, oldest first, and
// removes it only after a 2xx.

"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { EJSON } = require("bson");
const { startHandler, deadUrl, runtimeFor, deadLetters, insertEvent, SECRET } = require("../harness");

test("a handler that is down gets the event dead-lettered, and the redrive stores it later", async (t) => {
  const down = await deadUrl();
  // Redrive backoff 0: a dead letter that fails again is due again at once. Breaker off:
  // here every event spends its own retries (breaker.test.js has the breaker).
  const runtime = runtimeFor(down, {
    options: { retryBudgetMs: 300, redriveDeliveryBudgetMs: 200, redriveBackoffBaseMs: 0, breakerOpenMs: 0 },
  });
  const events = [1, 2, 3].map((n) => insertEvent(n));
  for (const event of events) {
    await assert.rejects(runtime.call("forwardChange", event), /failed after \d+ attempt\(s\): network/);
  }
  const letters = deadLetters(runtime).documents;
  assert.equal(letters.length, 3);
  const attemptsBefore = letters[0].attempts;
  for (const [letter, event] of letters.map((letter, i) => [letter, events[i]])) {
    assert.equal(letter._id, event._id._data);
    assert.equal(letter.body, EJSON.stringify(event, { relaxed: false }));
    assert.equal(letter.source, "trigger");
    assert.equal(letter.permanent, false);
    assert.equal(letter.status, null);
    assert.ok(letter.attempts >= 2, `retried before giving up: ${letter.attempts}`);
    assert.match(letter.error, /^network: /);
    assert.ok(letter.deadLetteredAt instanceof Date);
  }

  // Still down: the run stops at the first failure and keeps everything.
  const stillDown = await runtime.call("lakeRedrive");
  assert.equal(stillDown.deadLetters.sent, 0);
  assert.equal(stillDown.deadLetters.failed, 1);
  assert.match(stillDown.deadLetters.stoppedBy, /network/);
  assert.equal(deadLetters(runtime).documents.length, 3);
  const first = deadLetters(runtime).documents.find((letter) => letter._id === events[0]._id._data);
  assert.equal(first.redriveFailures, 1);
  assert.ok(first.attempts > attemptsBefore, "the redrive's attempts are counted");

  // Back up: every event lands, oldest first, and leaves the dead-letter collection.
  const handler = await startHandler({ INGEST_HMAC_SECRET: SECRET, RECORD_ENCODING: "canonical" });
  t.after(() => handler.stop());
  runtime.values.lakeIngestUrl = handler.url;
  const before = runtime.requests.length;
  const report = await runtime.call("lakeRedrive");
  assert.equal(report.deadLetters.sent, 3);
  assert.equal(report.deadLetters.stoppedBy, null);
  assert.equal(deadLetters(runtime).documents.length, 0);
  const sent = runtime.requests.slice(before).map((request) => JSON.parse(request.body)._id._data);
  assert.deepEqual(sent, events.map((event) => event._id._data), "oldest first");
  const records = [...handler.files().values()].map((text) => EJSON.parse(text, { relaxed: false }));
  assert.deepEqual(records.map((record) => record.eventId).sort(), events.map((e) => e._id._data).sort());
  for (const record of records) {
    const event = events.find((e) => e._id._data === record.eventId);
    assert.deepEqual(record.data, event.fullDocument);
  }
});

test("a dead letter the handler always refuses stays, backs off, and does not block the others", async (t) => {
  const handler = await startHandler({ INGEST_HMAC_SECRET: SECRET });
  t.after(() => handler.stop());
  const down = await deadUrl();
  const runtime = runtimeFor(down, { options: { retryBudgetMs: 50 } });
  const bad = insertEvent(10);
  delete bad.fullDocument;
  const good = [insertEvent(11), insertEvent(12)];
  for (const event of [bad, ...good]) {
    await assert.rejects(runtime.call("forwardChange", event));
  }
  runtime.values.lakeIngestUrl = handler.url;

  const report = await runtime.call("lakeRedrive");
  assert.deepEqual(report.deadLetters, { sent: 2, failed: 1, stoppedBy: null });
  const [left] = deadLetters(runtime).documents;
  assert.equal(left._id, bad._id._data);
  assert.equal(left.status, 400);
  assert.equal(left.permanent, true);
  assert.equal(left.redriveFailures, 1);
  assert.ok(left.nextAttemptAt.getTime() > Date.now() + 60000, "waits before its next try");
  assert.equal(handler.files().size, 2);

  // Not due yet: the next run leaves it alone.
  const requests = runtime.requests.length;
  const next = await runtime.call("lakeRedrive");
  assert.deepEqual(next.deadLetters, { sent: 0, failed: 0, stoppedBy: null });
  assert.equal(runtime.requests.length, requests);
});

test("a redrive run is bounded per run", async (t) => {
  const handler = await startHandler({ INGEST_HMAC_SECRET: SECRET });
  t.after(() => handler.stop());
  const runtime = runtimeFor(await deadUrl(), { options: { retryBudgetMs: 20, redriveMaxPerRun: 2 } });
  for (const n of [20, 21, 22]) {
    await assert.rejects(runtime.call("forwardChange", insertEvent(n)));
  }
  runtime.values.lakeIngestUrl = handler.url;
  assert.equal((await runtime.call("lakeRedrive")).deadLetters.sent, 2);
  assert.equal(deadLetters(runtime).documents.length, 1);
  assert.equal((await runtime.call("lakeRedrive")).deadLetters.sent, 1);
  assert.equal(deadLetters(runtime).documents.length, 0);
  assert.equal(handler.files().size, 3);
});

test("a fault inside the delivery code still leaves the event dead-lettered, never silently lost", async () => {
  const down = await deadUrl();
  const runtime = runtimeFor(down, { options: { retryBudgetMs: 300 } });
  runtime.utils.crypto.hmac = () => {
    throw new Error("crypto unavailable");
  };
  const event = insertEvent(7);
  await assert.rejects(runtime.call("forwardChange", event), /delivery failed unexpectedly: crypto unavailable.*kept in/);
  const letters = deadLetters(runtime).documents;
  assert.equal(letters.length, 1);
  assert.equal(letters[0]._id, event._id._data);
  assert.equal(letters[0].body, EJSON.stringify(event, { relaxed: false }));
});

test("a redrive run loads one dead letter's body at a time", async (t) => {
  const handler = await startHandler({ INGEST_HMAC_SECRET: SECRET });
  t.after(() => handler.stop());
  const runtime = runtimeFor(await deadUrl(), { options: { retryBudgetMs: 20, breakerOpenMs: 0 } });
  const events = [30, 31, 32, 33].map((n) => insertEvent(n, `{"_id":{"$numberInt":"${n}"},"plot":"${"x".repeat(5000)}"}`));
  for (const event of events) {
    await assert.rejects(runtime.call("forwardChange", event));
  }
  runtime.values.lakeIngestUrl = handler.url;
  deadLetters(runtime).reads.length = 0;
  const report = await runtime.call("lakeRedrive");
  assert.equal(report.deadLetters.sent, 4);
  const largest = Math.max(...deadLetters(runtime).reads.map((read) => read.bytes));
  assert.ok(largest < 2 * 5000, `one read loaded ${largest} bytes: more than one body`);
  assert.equal(handler.files().size, 4);
});
