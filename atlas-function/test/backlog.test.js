// Each lakeRedrive run logs one `lake-backlog {...}` line: how many dead letters and buffered
// events wait, the oldest one's age, the breaker's state and what the run sent, so that an
// Atlas log alert can fire on it (docs/operations.md, "Atlas side"). Ages are controlled as
// the other tests control time: by the stored dates.

"use strict";

const fs = require("node:fs");
const path = require("node:path");
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

const KEYS = [
  "deadLetters",
  "oldestDeadLetterSeconds",
  "buffered",
  "oldestBufferedSeconds",
  "breaker",
  "redriven",
  "failed",
  "error",
];

/** Runs lakeRedrive (which may throw) and returns the one backlog line it logged, parsed. */
async function run(runtime) {
  const before = runtime.logs.length;
  let thrown = null;
  await runtime.call("lakeRedrive").catch((error) => {
    thrown = error;
  });
  const lines = runtime.logs.slice(before).filter((line) => line.text.startsWith("lake-backlog "));
  assert.equal(lines.length, 1, `one backlog line per run: ${JSON.stringify(lines)}`);
  assert.equal(lines[0].level, "log");
  const match = /^lake-backlog (\{.*\})$/.exec(lines[0].text);
  assert.ok(match, lines[0].text);
  const line = JSON.parse(match[1]);
  assert.deepEqual(Object.keys(line), KEYS, "the same keys in the same order, every run");
  return { line, text: lines[0].text, thrown };
}

/** Sets the stored `field` of each document to `seconds[i]` seconds ago. */
function age(collection, field, seconds) {
  collection.documents.forEach((document, i) => {
    document[field] = new Date(Date.now() - seconds[i] * 1000);
  });
}

/** An age read a moment after it was set: at least what was set, and not minutes more. */
function assertAge(actual, expected) {
  assert.ok(actual >= expected && actual <= expected + 60, `age ${actual} s, set to ${expected} s`);
}

function assertNoEventData(text, events) {
  for (const event of events) {
    assert.ok(!text.includes(event._id._data), "no resume token (the dead letters' _id) in the line");
    assert.ok(!text.includes(event.fullDocument.title), "no document contents in the line");
  }
}

test("each run logs the dead letters and buffered events waiting, the oldest ages, and what it sent", async (t) => {
  const runtime = runtimeFor(await deadUrl(), {
    options: { retryBudgetMs: 50, redriveDeliveryBudgetMs: 50, breakerOpenMs: 0 },
  });
  const lettered = [1, 2, 3].map((n) => insertEvent(n));
  for (const event of lettered) {
    await assert.rejects(runtime.call("forwardChange", event));
  }
  runtime.values.lakeOptions.batching = true;
  const buffered = [4, 5].map((n) => insertEvent(n));
  for (const event of buffered) {
    assert.equal((await runtime.call("forwardChange", event)).buffered, true);
  }
  age(deadLetters(runtime), "deadLetteredAt", [7200, 600, 30]);
  age(buffer(runtime), "bufferedAt", [900, 10]);

  // Still down: one dead letter fails again (the run stops there), the batch stays.
  const down = await run(runtime);
  assert.equal(down.line.deadLetters, 3);
  assertAge(down.line.oldestDeadLetterSeconds, 7200);
  assert.equal(down.line.buffered, 2);
  assertAge(down.line.oldestBufferedSeconds, 900);
  assert.equal(down.line.breaker, "off");
  assert.equal(down.line.redriven, 0);
  assert.equal(down.line.failed, 1);
  assert.equal(down.line.error, null);
  assertNoEventData(down.text, [...lettered, ...buffered]);

  // Back up: everything is delivered, and the next line says nothing waits.
  const handler = await startHandler({ INGEST_HMAC_SECRET: SECRET });
  t.after(() => handler.stop());
  runtime.values.lakeIngestUrl = handler.url;
  // Budgets of a working endpoint: 50 ms was for failing fast against the dead one, and a
  // debug handler on a busy machine can take longer than that to store a file.
  Object.assign(runtime.values.lakeOptions, { retryBudgetMs: 60000, redriveDeliveryBudgetMs: 60000 });
  deadLetters(runtime).documents.forEach((letter) => {
    letter.nextAttemptAt = new Date();
  });
  const up = await run(runtime);
  assert.deepEqual(up.line, {
    deadLetters: 0,
    oldestDeadLetterSeconds: null,
    buffered: 0,
    oldestBufferedSeconds: null,
    breaker: "off",
    redriven: 5,
    failed: 0,
    error: null,
  });
  assert.equal(handler.files().size, 5);
});

test("when nothing waits the line has zeros, null ages and a closed breaker", async () => {
  const runtime = runtimeFor(await deadUrl());
  const { line } = await run(runtime);
  assert.deepEqual(line, {
    deadLetters: 0,
    oldestDeadLetterSeconds: null,
    buffered: 0,
    oldestBufferedSeconds: null,
    breaker: "closed",
    redriven: 0,
    failed: 0,
    error: null,
  });
  assert.equal(runtime.requests.length, 0);
  assert.equal(state(runtime).documents.length, 0, "reading the breaker's state creates none");
});

test("the line follows the breaker: open, half-open once its time is over or while one event tests", async () => {
  const runtime = runtimeFor(await deadUrl(), { options: { retryBudgetMs: 50, redriveDeliveryBudgetMs: 50 } });
  const events = [1, 2].map((n) => insertEvent(n));
  for (const event of events) {
    await assert.rejects(runtime.call("forwardChange", event));
  }
  age(deadLetters(runtime), "deadLetteredAt", [120, 60]);

  // The run finds the endpoint still down and opens the breaker again.
  const opened = await run(runtime);
  assert.equal(opened.line.breaker, "open");
  assert.equal(opened.line.deadLetters, 2);
  assertAge(opened.line.oldestDeadLetterSeconds, 120);
  assert.equal(opened.line.failed, 1);
  assertNoEventData(opened.text, events);

  // Nothing due this run, so it sends nothing: the line reports the breaker as stored.
  deadLetters(runtime).documents.forEach((letter) => {
    letter.nextAttemptAt = new Date(Date.now() + 3600000);
  });
  const endpoint = state(runtime).documents.find((document) => document._id === "endpoint");
  endpoint.downUntil = new Date(Date.now() - 1);
  const expired = await run(runtime);
  assert.equal(expired.line.breaker, "half-open");
  assert.equal(expired.line.failed, 0);
  assert.equal(endpoint.probeStartedAt, undefined, "reading the state claims no test");

  endpoint.downUntil = new Date(Date.now() + 60000);
  endpoint.probeStartedAt = new Date();
  assert.equal((await run(runtime)).line.breaker, "half-open");
  delete endpoint.probeStartedAt;
  assert.equal((await run(runtime)).line.breaker, "open");
});

test("a run that fails still logs its line, with what could not be read as null", async () => {
  const runtime = runtimeFor(await deadUrl());
  deadLetters(runtime).failWith = new Error("dead letters unavailable");
  state(runtime).failWith = new Error("state unavailable");
  await buffer(runtime).insertOne({ _id: "x", body: "{}", bytes: 2, bufferedAt: new Date(Date.now() - 5000) });

  const { line, thrown } = await run(runtime);
  assert.match(String(thrown && thrown.message), /dead letters unavailable/, "the run itself fails");
  assert.equal(line.deadLetters, null);
  assert.equal(line.oldestDeadLetterSeconds, null);
  assert.equal(line.buffered, 1);
  assertAge(line.oldestBufferedSeconds, 5);
  assert.equal(line.breaker, null);
  assert.match(line.error, /dead_letters unreadable: dead letters unavailable/);
  assert.match(line.error, /lake breaker state failed: state unavailable/);
});

test("the backlog costs a count and one small read per collection, each sort served by a declared index", async (t) => {
  const handler = await startHandler({ INGEST_HMAC_SECRET: SECRET });
  t.after(() => handler.stop());
  const runtime = runtimeFor(await deadUrl(), { options: { retryBudgetMs: 20, breakerOpenMs: 0 } });
  const large = (n) => insertEvent(n, `{"_id":{"$numberInt":"${n}"},"plot":"${"x".repeat(5000)}"}`);
  for (const n of [1, 2]) {
    await assert.rejects(runtime.call("forwardChange", large(n)));
  }
  runtime.values.lakeOptions.batching = true;
  for (const n of [3, 4]) {
    await runtime.call("forwardChange", large(n));
  }
  // Something waits afterwards: one letter is not due, one event past the run's batches.
  deadLetters(runtime).documents[0].nextAttemptAt = new Date(Date.now() + 3600000);
  runtime.values.lakeOptions.batchSize = 1;
  runtime.values.lakeOptions.redriveMaxBatchesPerRun = 1;
  runtime.values.lakeOptions.retryBudgetMs = 60000; // 20 ms was for the dead endpoint
  runtime.values.lakeIngestUrl = handler.url;

  const collections = { dead_letters: deadLetters(runtime), buffer: buffer(runtime) };
  for (const collection of Object.values(collections)) {
    collection.reads.length = 0;
    collection.calls = {};
  }
  const { line } = await run(runtime);
  assert.equal(line.deadLetters, 1);
  assert.equal(line.buffered, 1);
  assert.equal(line.redriven, 2);
  for (const collection of Object.values(collections)) {
    assert.equal(collection.calls.count, 1, "one count per collection");
    // The backlog's read comes last: the oldest entry's time, without its body.
    const last = collection.reads[collection.reads.length - 1];
    assert.equal(last.documents, 1);
    assert.ok(last.bytes < 100, `the age read loaded ${last.bytes} bytes`);
  }

  // Every sort asked of these collections (the redrive's and the backlog's) is a prefix of an
  // index atlas-function/indexes.js declares, in the database the options name by default.
  const declared = require("../indexes.js");
  assert.equal(declared.database, (await runtime.call("lakeConfig")).database);
  for (const [name, collection] of Object.entries(collections)) {
    assert.ok(collection.sorts.length >= 2, `${name}: sorted reads were made`);
    for (const sort of collection.sorts) {
      const served = (declared.collections[name] || []).some((key) => isPrefix(sort, key));
      assert.ok(served, `${name}: no declared index serves the sort ${JSON.stringify(sort)}`);
    }
  }
});

test("indexes.js, run by mongosh, creates the declared indexes in the lake database", () => {
  const created = [];
  const db = {
    getSiblingDB: (database) => ({
      getCollection: (name) => ({
        createIndex: (key) => {
          created.push({ database, name, key });
          return `${Object.keys(key).join("_")}_index`;
        },
      }),
    }),
  };
  const printed = [];
  const source = fs.readFileSync(path.join(__dirname, "../indexes.js"), "utf8");
  new Function("db", "print", "module", source)(db, (text) => printed.push(text), undefined);
  assert.deepEqual(created, [
    { database: "lake_delivery", name: "dead_letters", key: { deadLetteredAt: 1, _id: 1 } },
    { database: "lake_delivery", name: "buffer", key: { bufferedAt: 1, _id: 1 } },
  ]);
  assert.equal(printed.length, 2);
});

/** Whether `sort`'s fields, in order and direction, begin `key` (or all run exactly reversed). */
function isPrefix(sort, key) {
  const fields = Object.keys(sort);
  const keyFields = Object.keys(key);
  if (fields.length > keyFields.length || !fields.every((field, i) => field === keyFields[i])) {
    return false;
  }
  const same = fields.every((field) => sort[field] === key[field]);
  const reversed = fields.every((field) => sort[field] === -key[field]);
  return same || reversed;
}
