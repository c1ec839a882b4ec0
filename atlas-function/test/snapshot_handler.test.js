// lakeSnapshot through the real handler: a snapshot over several runs, with inserts,
// updates and deletes meanwhile on documents behind and ahead of the cursor (sent by the
// trigger's function, some before and some after the snapshot reaches them). Afterwards
// "the latest record per key by eventId" over the lake (the README's current-state rule)
// equals the collection's final state, and a resent page is stored once.

"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { EJSON, BSON } = require("bson");
const { startHandler, runtimeFor, deadLetters, state, SECRET } = require("../harness");
const { keyOf, canonical, changeEvent } = require("./snapshot_fixtures");

const { Int32, ObjectId, Timestamp } = BSON;

/** The lake's current state by the README's rule: per key the record with the greatest
 * eventId; a delete removes the key. */
function currentState(files) {
  const latest = new Map();
  for (const text of files.values()) {
    const record = EJSON.parse(text, { relaxed: false });
    const key = keyOf(record.documentKey._id);
    const known = latest.get(key);
    if (!known || Buffer.compare(Buffer.from(record.eventId), Buffer.from(known.eventId)) > 0) {
      latest.set(key, record);
    }
  }
  const state = new Map();
  for (const [key, record] of latest) {
    if (record.operationType !== "delete") state.set(key, canonical(record.data));
  }
  return state;
}

function assertSameState(actual, expected) {
  const differ = [...new Set([...actual.keys(), ...expected.keys()])].filter((key) => actual.get(key) !== expected.get(key));
  assert.deepEqual(
    differ.map((key) => [key, actual.get(key) ?? "absent", expected.get(key) ?? "absent"]),
    [],
    "keys whose current state in the lake differs from the collection"
  );
}

test("snapshot and changes meanwhile through the real handler: the lake's current state is the collection's", async (t) => {
  const handler = await startHandler({ INGEST_HMAC_SECRET: SECRET, RECORD_ENCODING: "canonical" });
  t.after(() => handler.stop());
  const runtime = runtimeFor(handler.url, {
    options: { snapshotPageSize: 40, snapshotBatchSize: 15, snapshotMaxOperationsPerRun: 40 },
  });
  const items = runtime.collection("mongodb-atlas", "shop", "items");
  for (let n = 0; n < 300; n += 1) {
    const _id = n % 3 === 0 ? new Int32(n) : n % 3 === 1 ? `key ${n}` : ObjectId.createFromHexString(n.toString(16).padStart(24, "0"));
    items.documents.push({ _id, n, title: `Movie ${n}` });
  }
  const inOrder = await items.find({}).sort({ _id: 1 }).toArray();

  // Changes before the snapshot starts are already in what it reads (the trigger ran first).
  await items.updateOne({ _id: inOrder[5]._id }, { $set: { title: "changed before the snapshot" } });
  await runtime.call("forwardChange", changeEvent(runtime, "update", (await items.findOne({ _id: inOrder[5]._id })), 1));

  const first = await runtime.call("lakeSnapshot", "shop", "items");
  assert.equal(first.snapshots[0].stoppedBy, "operation budget");
  const S = state(runtime).documents.find((document) => document.kind === "snapshot").snapshotTime;
  runtime.clock.t = S.t + 1;

  // During the snapshot: behind the cursor (already sent) and ahead of it (not yet read).
  let n = 100;
  const change = async (operationType, id, update) => {
    if (operationType === "delete") {
      const document = await items.findOne({ _id: id });
      await items.deleteOne({ _id: id });
      await runtime.call("forwardChange", changeEvent(runtime, "delete", document, (n += 1)));
    } else if (operationType === "insert") {
      await items.insertOne(update);
      await runtime.call("forwardChange", changeEvent(runtime, "insert", await items.findOne({ _id: update._id }), (n += 1)));
    } else {
      await items.updateOne({ _id: id }, { $set: update });
      await runtime.call("forwardChange", changeEvent(runtime, "update", await items.findOne({ _id: id }), (n += 1)));
    }
  };
  await change("update", inOrder[3]._id, { title: "behind, updated" });
  await change("delete", inOrder[4]._id);
  await change("update", inOrder[250]._id, { title: "ahead, updated" });
  await change("delete", inOrder[251]._id);
  await change("insert", null, { _id: new Int32(-1), title: "inserted behind the cursor" });
  await change("insert", null, { _id: "zzz", title: "inserted ahead of the cursor" });
  // Updated twice: the second change arrives first (an unordered trigger).
  await items.updateOne({ _id: inOrder[260]._id }, { $set: { title: "ahead, first" } });
  const firstEvent = changeEvent(runtime, "update", await items.findOne({ _id: inOrder[260]._id }), (n += 1));
  await change("update", inOrder[260]._id, { title: "ahead, second" });
  await runtime.call("forwardChange", firstEvent);

  let runs = 1;
  while (!state(runtime).documents.find((document) => document.kind === "snapshot").finishedAt) {
    await runtime.call("lakeSnapshot");
    runs += 1;
    assert.ok(runs < 50);
  }
  assert.ok(runs >= 3, `${runs} runs`);
  assert.equal(deadLetters(runtime).documents.length, 0, "nothing refused");

  const files = handler.files();
  const records = [...files.values()].map((text) => EJSON.parse(text, { relaxed: false }));
  const snapshotRecords = records.filter((record) => record.operationType === "snapshot");
  // One file per document and snapshot, though stopped runs sent pages again.
  const sentEvents = runtime.requests
    .filter((request) => request.body.startsWith("["))
    .reduce((total, request) => total + JSON.parse(request.body).length, 0);
  assert.ok(sentEvents > snapshotRecords.length, "some pages were sent twice");
  assert.equal(new Set(snapshotRecords.map((record) => keyOf(record.documentKey._id))).size, snapshotRecords.length);
  for (const record of snapshotRecords) {
    assert.equal(record.dataSource, "fullDocument");
    assert.ok(record.clusterTime.equals(S), "in the hour of S");
  }

  const expected = new Map((await items.find({}).toArray()).map((document) => [keyOf(document._id), canonical(document)]));
  assertSameState(currentState(files), expected);

  // A second snapshot (a repair) later changes nothing in the current state.
  runtime.clock.t += 3600;
  await runtime.call("lakeSnapshot", "shop", "items", "restart");
  for (let i = 0; i < 50 && state(runtime).documents.some((document) => document.kind === "snapshot" && !document.finishedAt); i += 1) {
    await runtime.call("lakeSnapshot");
  }
  assertSameState(currentState(handler.files()), expected);
  assert.ok(new Timestamp({ t: S.t + 3600, i: 0 }).lessThanOrEqual(state(runtime).documents.filter((d) => d.kind === "snapshot").pop().snapshotTime));
});
