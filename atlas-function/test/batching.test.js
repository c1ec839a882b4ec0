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

/** An insert event whose document holds `size` bytes of text: big enough to weigh. */
function bigEvent(n, size) {
  return insertEvent(n, `{"_id":{"$numberInt":"${n}"},"plot":"${"x".repeat(size)}"}`);
}

test("a batch loads at most about batchMaxBytes of bodies, never batchSize bodies at once", async (t) => {
  const handler = await signedHandler(t);
  const counting = await startProxy(handler.url, () => "forward");
  t.after(() => counting.close());
  const body = EJSON.stringify(bigEvent(1, 4000), { relaxed: false }).length;
  // Room for two bodies per batch, not three.
  const batchMaxBytes = Math.floor(2.5 * body);
  const runtime = runtimeFor(counting.url, { options: { batching: true, batchSize: 100, batchMaxBytes } });
  const events = [1, 2, 3, 4, 5, 6, 7].map((n) => bigEvent(n, 4000));
  for (const event of events) await runtime.call("forwardChange", event);
  assert.equal(buffer(runtime).documents[0].bytes, body, "the size is stored with the event");
  // An event buffered by an earlier version, without its size: it goes alone.
  const legacy = bigEvent(8, 10);
  await buffer(runtime).insertOne({
    _id: legacy._id._data,
    body: EJSON.stringify(legacy, { relaxed: false }),
    about: { operationType: "insert", ns: legacy.ns },
    bufferedAt: new Date(Date.now() + 1000),
  });
  buffer(runtime).reads.length = 0;

  const report = await runtime.call("lakeRedrive");
  assert.deepEqual(report.buffer, { batches: 5, events: 8, deadLettered: 0, stoppedBy: null });
  assert.deepEqual(counting.seen.map((request) => JSON.parse(request.body).length), [2, 2, 2, 1, 1]);
  const sent = counting.seen.flatMap((request) => JSON.parse(request.body).map((event) => event._id._data));
  assert.deepEqual(sent, [...events, legacy].map((event) => event._id._data), "oldest first");
  const largest = Math.max(...buffer(runtime).reads.map((read) => read.bytes));
  assert.ok(largest <= batchMaxBytes + 1000, `one read loaded ${largest} bytes; batchMaxBytes is ${batchMaxBytes}`);
  assert.equal(handler.files().size, 8);
  assert.equal(buffer(runtime).documents.length, 0);
});

test("a refused batch becomes dead letters in one insertMany and leaves the buffer in one deleteMany", async (t) => {
  const handler = await signedHandler(t);
  const runtime = runtimeFor(handler.url, { options: { batching: true, batchSize: 10 } });
  const bad = insertEvent(2);
  delete bad.fullDocument;
  const events = [insertEvent(1), bad, insertEvent(3), insertEvent(4)];
  for (const event of events) await runtime.call("forwardChange", event);
  // One of them is a dead letter already (an earlier run got as far as keeping it).
  await deadLetters(runtime).insertOne({ _id: events[3]._id._data, body: "kept before", source: "batch" });
  const deadLetterCalls = { ...deadLetters(runtime).calls };
  const bufferCalls = { ...buffer(runtime).calls };

  const report = await runtime.call("lakeRedrive");
  assert.deepEqual(report.buffer, { batches: 1, events: 0, deadLettered: 4, stoppedBy: null });
  const calls = (collection, before) =>
    Object.fromEntries(Object.entries(collection.calls).map(([name, n]) => [name, n - (before[name] || 0)]).filter(([, n]) => n > 0));
  const made = calls(deadLetters(runtime), deadLetterCalls);
  assert.equal(made.insertMany, 1, JSON.stringify(made));
  assert.equal(made.insertOne, undefined, "no insert per event");
  assert.equal(made.updateOne, undefined, "no update per event");
  assert.equal(calls(buffer(runtime), bufferCalls).deleteMany, 1);
  assert.equal(buffer(runtime).documents.length, 0);
  const letters = deadLetters(runtime).documents;
  assert.deepEqual(letters.map((letter) => letter._id).sort(), events.map((event) => event._id._data).sort());
  const kept = letters.find((letter) => letter._id === events[3]._id._data);
  assert.equal(kept.body, "kept before", "a dead letter already there stays as it is");
  for (const letter of letters.filter((letter) => letter !== kept)) {
    assert.equal(letter.status, 400);
    assert.equal(letter.source, "batch");
    assert.equal(letter.permanent, true);
    assert.equal(letter.body, EJSON.stringify(events.find((e) => e._id._data === letter._id), { relaxed: false }));
  }
});

test("a refused batch leaves the buffer only once every event is a dead letter", async (t) => {
  const handler = await signedHandler(t);
  const runtime = runtimeFor(handler.url, { options: { batching: true, batchSize: 10 } });
  const bad = insertEvent(2);
  delete bad.fullDocument;
  const events = [insertEvent(1), bad];
  for (const event of events) await runtime.call("forwardChange", event);
  const letters = deadLetters(runtime);
  const insertMany = letters.insertMany.bind(letters);

  // One document failing for another reason than a duplicate: the run fails, nothing is removed.
  letters.insertMany = async (documents, options) => {
    await insertMany(documents.slice(1), options);
    const error = new Error("document too large");
    error.writeErrors = { index: 0, code: 10334, errmsg: "BSONObj size is invalid" };
    throw error;
  };
  await assert.rejects(runtime.call("lakeRedrive"), /document too large/);
  assert.equal(buffer(runtime).documents.length, 2);

  // A duplicate error that does not say what was inserted, and events still missing
  // after the second try: nothing is removed either.
  letters.documents.length = 0;
  letters.insertMany = async () => {
    throw new Error("E11000 duplicate key error");
  };
  await assert.rejects(runtime.call("lakeRedrive"), /E11000/);
  assert.equal(buffer(runtime).documents.length, 2);

  // An insert that stops at the first duplicate (as an ordered one does, should
  // {ordered: false} not be honoured): the events it left out are inserted, then the
  // batch leaves the buffer.
  await insertMany([{ _id: events[0]._id._data, body: "kept before", source: "trigger" }]);
  letters.insertMany = (documents) => insertMany(documents);
  const report = await runtime.call("lakeRedrive");
  assert.equal(report.buffer.deadLettered, 2);
  assert.equal(buffer(runtime).documents.length, 0);
  assert.deepEqual(letters.documents.map((letter) => [letter._id, letter.body === "kept before"]), [
    [events[0]._id._data, true],
    [bad._id._data, false],
  ]);
});

test("the stored size is the body's UTF-8 length", async () => {
  const runtime = runtimeFor(await deadUrl(), { options: { batching: true } });
  await runtime.call("forwardChange", insertEvent(1, '{"_id":{"$numberInt":"1"},"title":"Amélie 千と千尋 🎬"}'));
  const [entry] = buffer(runtime).documents;
  assert.equal(entry.bytes, Buffer.byteLength(entry.body, "utf8"));
  assert.ok(entry.bytes > entry.body.length);
});
