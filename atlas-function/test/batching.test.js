// Batching mode: the trigger's function only buffers; the scheduled lakeRedrive posts the
// buffer as JSON arrays of up to batchSize events, one lake file per event, and removes
// events only after a 2xx.

"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { EJSON } = require("bson");
const {
  startHandler,
  startProxy,
  deadUrl,
  runtimeFor,
  deadLetters,
  buffer,
  insertEvent,
  SECRET,
} = require("../harness");

const BATCHING = { batching: true, batchSize: 3 };

async function signedHandler(t) {
  const handler = await startHandler({ INGEST_HMAC_SECRET: SECRET, RECORD_ENCODING: "canonical" });
  t.after(() => handler.stop());
  return handler;
}

test("batches land one file per event", async (t) => {
  const handler = await signedHandler(t);
  const counting = await startProxy(handler.url, () => "forward");
  t.after(() => counting.close());
  const runtime = runtimeFor(counting.url, { options: BATCHING });
  const events = [1, 2, 3, 4, 5, 6, 7].map((n) => insertEvent(n));

  for (const event of events) {
    assert.deepEqual(await runtime.call("forwardChange", event), {
      buffered: true,
      eventId: event._id._data,
    });
  }
  // A redelivered event is buffered once.
  await runtime.call("forwardChange", events[0]);
  assert.equal(runtime.requests.length, 0, "the trigger's function sends nothing");
  assert.equal(buffer(runtime).documents.length, 7);

  const report = await runtime.call("lakeRedrive");
  assert.deepEqual(report.buffer, { batches: 3, events: 7, deadLettered: 0, stoppedBy: null });
  // Arrays of 3, 3 and 1, oldest first, each element the event's exact canonical text.
  const sizes = counting.seen.map((request) => JSON.parse(request.body).length);
  assert.deepEqual(sizes, [3, 3, 1]);
  const sent = counting.seen.flatMap((request) => EJSON.parse(request.body, { relaxed: false }));
  assert.deepEqual(sent.map((event) => event._id._data), events.map((event) => event._id._data));
  assert.equal(
    counting.seen[0].body,
    "[" + events.slice(0, 3).map((event) => EJSON.stringify(event, { relaxed: false })).join(",") + "]"
  );
  for (const request of counting.seen) {
    assert.match(request.headers["x-ingest-signature"], /^t=\d+,v1=[0-9a-f]{64}$/);
  }

  const files = handler.files();
  assert.equal(files.size, 7, "one file per event");
  const ids = [...files.values()].map((text) => EJSON.parse(text, { relaxed: false }).eventId);
  assert.deepEqual(ids.sort(), events.map((event) => event._id._data).sort());
  assert.equal(buffer(runtime).documents.length, 0);
  assert.equal(deadLetters(runtime).documents.length, 0);
});

test("batches also stop at batchMaxBytes", async (t) => {
  const handler = await signedHandler(t);
  const runtime = runtimeFor(handler.url, { options: { batching: true, batchSize: 100, batchMaxBytes: 1 } });
  for (const n of [1, 2, 3]) await runtime.call("forwardChange", insertEvent(n));
  const report = await runtime.call("lakeRedrive");
  assert.equal(report.buffer.batches, 3, "one event per request: each is over the limit alone");
  assert.equal(handler.files().size, 3);
});

test("while the handler is down the buffer is kept, and sent once it is back", async (t) => {
  const runtime = runtimeFor(await deadUrl(), { options: { ...BATCHING, redriveDeliveryBudgetMs: 200 } });
  for (const n of [1, 2, 3, 4]) await runtime.call("forwardChange", insertEvent(n));

  const down = await runtime.call("lakeRedrive");
  assert.equal(down.buffer.events, 0);
  assert.match(down.buffer.stoppedBy, /network/);
  assert.equal(buffer(runtime).documents.length, 4);
  assert.equal(deadLetters(runtime).documents.length, 0);

  const handler = await signedHandler(t);
  runtime.values.lakeIngestUrl = handler.url;
  const up = await runtime.call("lakeRedrive");
  assert.equal(up.buffer.events, 4);
  assert.equal(buffer(runtime).documents.length, 0);
  assert.equal(handler.files().size, 4);
});

test("a batch the handler refuses is split into dead letters, and the good events still land", async (t) => {
  const handler = await signedHandler(t);
  const runtime = runtimeFor(handler.url, { options: { batching: true, batchSize: 10 } });
  const bad = insertEvent(2);
  delete bad.fullDocument;
  for (const event of [insertEvent(1), bad, insertEvent(3)]) await runtime.call("forwardChange", event);

  const first = await runtime.call("lakeRedrive");
  assert.deepEqual(first.buffer, { batches: 1, events: 0, deadLettered: 3, stoppedBy: null });
  assert.equal(handler.files().size, 0, "a batch is all or nothing");
  assert.equal(buffer(runtime).documents.length, 0);
  assert.deepEqual(
    deadLetters(runtime).documents.map((letter) => [letter.source, letter.status]),
    [["batch", 400], ["batch", 400], ["batch", 400]]
  );

  // Singly, the good ones go through; the bad one stays for an operator.
  const second = await runtime.call("lakeRedrive");
  assert.deepEqual(second.deadLetters, { sent: 2, failed: 1, stoppedBy: null });
  assert.equal(handler.files().size, 2);
  const [left] = deadLetters(runtime).documents;
  assert.equal(left._id, bad._id._data);
});

test("if the buffer refuses an event, it is delivered at once instead", async (t) => {
  const handler = await signedHandler(t);
  const runtime = runtimeFor(handler.url, { options: BATCHING });
  buffer(runtime).failWith = new Error("buffer unavailable");
  const result = await runtime.call("forwardChange", insertEvent(1));
  assert.equal(result.delivered, true);
  assert.equal(handler.files().size, 1);
  assert.ok(runtime.logs.some((line) => /lake buffer insert failed/.test(line.text)));
});
