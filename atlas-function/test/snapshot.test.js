// lakeSnapshot against an endpoint that records what it is sent (a real HTTP server over
// loopback): pages in MongoDB's _id order over mixed _id types, resumable progress across
// runs cut by the time budget, the operation budget and an outage, S recorded before the
// first page, refused batches dead-lettered, restart and a second snapshot.

"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { EJSON, BSON } = require("bson");
const { startProxy, deadUrl, runtimeFor, deadLetters, state, FUNCTION_KEY } = require("../harness");
const { keyOf, shuffled, mixedDocuments } = require("./snapshot_fixtures");

const { Int32, Long, Double, ObjectId, MinKey, MaxKey, Timestamp, Binary } = BSON;

const OK = { status: 200, body: '{"stored":1}' };

/** The type of an _id as the order of types names it, for an independent check of it. */
const TYPE_ORDER = ["minKey", "null", "number", "string", "object", "binData", "objectId", "bool", "date", "timestamp", "maxKey"];
function typeOf(id) {
  if (id === null) return "null";
  if (typeof id === "boolean") return "bool";
  if (typeof id === "string") return "string";
  if (id instanceof Date) return "date";
  const names = { MinKey: "minKey", MaxKey: "maxKey", Binary: "binData", ObjectId: "objectId", Timestamp: "timestamp" };
  if (["Int32", "Long", "Double", "Decimal128"].includes(id._bsontype) || typeof id === "number") return "number";
  return names[id._bsontype] || "object";
}

/** An endpoint that answers 200 (after delayMs) unless `endpoint.down`; it keeps each
 * request's events and whether they were acknowledged. */
async function recordingEndpoint(t, delayMs = 0) {
  const endpoint = { down: false, acknowledged: [] };
  const proxy = await startProxy("http://127.0.0.1:9/unused", () => {
    const answer = endpoint.down ? { status: 503, body: '{"error":"storage_unavailable"}' } : Object.assign({ delayMs }, OK);
    endpoint.acknowledged.push(answer.status === 200);
    return answer;
  });
  t.after(() => proxy.close());
  endpoint.url = proxy.url;
  endpoint.seen = proxy.seen;
  /** The events of the acknowledged requests, in the order they were sent. */
  endpoint.events = () =>
    proxy.seen
      .filter((_, index) => endpoint.acknowledged[index])
      .flatMap((request) => EJSON.parse(request.body, { relaxed: false }));
  return endpoint;
}

function source(runtime) {
  return runtime.collection("mongodb-atlas", "shop", "items");
}

function snapshots(runtime) {
  return state(runtime).documents.filter((document) => document.kind === "snapshot");
}

test("10,000 documents of mixed _id types over runs cut by the time budget and an outage: each sent, in _id order, progress resumed", async (t) => {
  const endpoint = await recordingEndpoint(t, 15);
  const runtime = runtimeFor(endpoint.url, {
    options: {
      snapshotPageSize: 200,
      snapshotBatchSize: 50,
      snapshotRunBudgetMs: 700,
      snapshotDeliveryBudgetMs: 150,
      attemptTimeoutMs: 200,
    },
  });
  const items = source(runtime);
  items.documents = mixedDocuments();
  const inOrder = await items.find({}).sort({ _id: 1 }).toArray();
  const journalStart = runtime.journal.length;

  const reports = [await runtime.call("lakeSnapshot", "shop", "items")];
  assert.equal(snapshots(runtime).length, 1);
  const snapshot = snapshots(runtime)[0];
  // S was read (aggregate) and stored (updateOne) before the first page was read.
  const journal = runtime.journal.slice(journalStart);
  const firstPage = journal.indexOf("shop.items find");
  const readS = journal.indexOf("lake_delivery.state aggregate");
  assert.ok(readS >= 0 && readS < firstPage, journal.slice(0, 8).join("; "));
  assert.equal(journal[readS + 1], "lake_delivery.state updateOne");
  assert.ok(snapshot.snapshotTime instanceof Timestamp);
  const S = snapshot.snapshotTime;

  // Changes meanwhile (delivered by the trigger, not by the snapshot): before the cursor
  // they are not seen, after it they are.
  const sentSoFar = snapshot.sent;
  assert.ok(sentSoFar > 0 && sentSoFar < 4000, `first run sent ${sentSoFar}`);
  const before = inOrder[10]._id;
  const after = inOrder[9000]._id;
  const deletedAfter = inOrder[9001]._id;
  await items.updateOne({ _id: after }, { $set: { changed: "during the snapshot" } });
  await items.updateOne({ _id: before }, { $set: { changed: "during the snapshot" } });
  await items.deleteOne({ _id: deletedAfter });
  await items.insertOne({ _id: "zzz inserted during the snapshot" });
  await items.insertOne({ _id: new Int32(-5) });
  assert.ok(runtime.clusterTime().i > S.i, "the writes moved the cluster's clock on");

  // Two runs meet an outage: nothing progresses, nothing is dead-lettered.
  endpoint.down = true;
  for (let i = 0; i < 2; i += 1) {
    const report = await runtime.call("lakeSnapshot");
    assert.match(report.snapshots[0].stoppedBy, /HTTP 503/);
    assert.equal(report.snapshots[0].pages, 0);
    reports.push(report);
  }
  assert.equal(snapshots(runtime)[0].sent, sentSoFar);
  assert.equal(deadLetters(runtime).documents.length, 0);
  endpoint.down = false;

  // The scheduled trigger goes on until it is finished.
  let runs = 3;
  while (!snapshots(runtime)[0].finishedAt) {
    assert.ok(runs < 300, "the snapshot finishes");
    reports.push(await runtime.call("lakeSnapshot"));
    runs += 1;
  }
  const cut = reports.filter((report) => report.snapshots[0].stoppedBy === "run budget").length;
  assert.ok(cut >= 3, `${cut} runs were cut by the time budget`);

  const finalState = await items.find({}).sort({ _id: 1 }).toArray();
  const done = snapshots(runtime)[0];
  assert.equal(done.sent, finalState.length - 1, "every document once in the counts (the one inserted before the cursor is not read)");
  assert.equal(done.deadLettered, 0);
  assert.equal(done.runs, runs);

  const events = endpoint.events();
  // Every event is a snapshot event of S, in its documented shape.
  for (const event of events.slice(0, 50)) {
    assert.deepEqual(Object.keys(event), ["operationType", "ns", "documentKey", "fullDocument", "snapshotTime"]);
    assert.equal(event.operationType, "snapshot");
    assert.deepEqual(event.ns, { db: "shop", coll: "items" });
    assert.equal(keyOf(event.documentKey._id), keyOf(event.fullDocument._id));
  }
  assert.ok(events.every((event) => event.snapshotTime.equals(S)));

  // Every document sent at least once; the first sends are in _id order (type order, then value).
  const firsts = [];
  const seen = new Set();
  for (const event of events) {
    const key = keyOf(event.documentKey._id);
    if (!seen.has(key)) firsts.push(event.documentKey._id);
    seen.add(key);
  }
  const expected = finalState.filter((document) => keyOf(document._id) !== keyOf(new Int32(-5)));
  assert.deepEqual(firsts.map(keyOf), expected.map((document) => keyOf(document._id)));
  const ranks = firsts.map((id) => TYPE_ORDER.indexOf(typeOf(id)));
  assert.ok(ranks.every((rank, i) => rank >= 0 && (i === 0 || rank >= ranks[i - 1])), "types in BSON order");
  assert.ok(!seen.has(keyOf(deletedAfter)), "a document deleted ahead of the cursor is not sent");
  const changed = events.find((event) => keyOf(event.documentKey._id) === keyOf(after));
  assert.equal(changed.fullDocument.changed, "during the snapshot", "ahead of the cursor: the changed state");
  const early = events.find((event) => keyOf(event.documentKey._id) === keyOf(before));
  assert.equal(early.fullDocument.changed, undefined, "behind the cursor: the state when read");

  // A stop resends at most the page it was in.
  const stops = reports.filter((report) => report.snapshots[0].stoppedBy).length;
  assert.ok(events.length <= expected.length + stops * 200, `${events.length} events for ${expected.length} documents`);

  // Signed, with the function key.
  for (const request of endpoint.seen) {
    assert.match(request.headers["x-ingest-signature"], /^t=\d+,v1=[0-9a-f]{64}$/);
    assert.equal(request.headers["x-functions-key"], FUNCTION_KEY);
  }

  // Finished: the scheduled trigger does nothing.
  const requests = endpoint.seen.length;
  const idle = await runtime.call("lakeSnapshot");
  assert.deepEqual(idle, { snapshots: [] });
  assert.equal(endpoint.seen.length, requests);
  // Counts only in the log line: no _id, no contents.
  const line = runtime.logs.filter((entry) => entry.text.startsWith("lakeSnapshot: ")).pop();
  assert.ok(line && !/key \d|during/.test(runtime.logs.map((entry) => entry.text).join("\n")));

  // A second snapshot (a repair) is a new document with a later S.
  runtime.clock.t += 60;
  await runtime.call("lakeSnapshot", "shop", "items");
  assert.equal(snapshots(runtime).length, 2);
  const second = snapshots(runtime)[1];
  assert.ok(second.snapshotTime.greaterThan(S), "a second snapshot has a later S");
  assert.equal(snapshots(runtime)[0].sent, done.sent, "the first one's record is kept as it was");
});

test("the operation budget ends a run before Atlas's limit; the next run goes on from the last page", async (t) => {
  const endpoint = await recordingEndpoint(t);
  const runtime = runtimeFor(endpoint.url, {
    options: { snapshotPageSize: 20, snapshotBatchSize: 5, snapshotMaxOperationsPerRun: 30 },
  });
  source(runtime).documents = shuffled(Array.from({ length: 100 }, (_, n) => ({ _id: n, title: `Movie ${n}` })));
  const first = await runtime.call("lakeSnapshot", "shop", "items");
  assert.equal(first.snapshots[0].stoppedBy, "operation budget");
  // A page costs a read, 5 posts and an update: one page and part of the next fit in 30.
  assert.equal(first.snapshots[0].pages, 1);
  assert.equal(snapshots(runtime)[0].sent, 20);
  assert.equal(snapshots(runtime)[0].last.id, 19);
  let runs = 1;
  while (!snapshots(runtime)[0].finishedAt) {
    const report = await runtime.call("lakeSnapshot");
    assert.ok(report.snapshots[0].finished || report.snapshots[0].stoppedBy === "operation budget");
    runs += 1;
    assert.ok(runs < 20);
  }
  assert.ok(runs >= 5, `${runs} runs`);
  const ids = new Set(endpoint.events().map((event) => keyOf(event.documentKey._id)));
  assert.equal(ids.size, 100);
  assert.equal(snapshots(runtime)[0].sent, 100);
});

test("an empty collection: S is recorded and the snapshot finishes at once", async (t) => {
  const endpoint = await recordingEndpoint(t);
  const runtime = runtimeFor(endpoint.url);
  const report = await runtime.call("lakeSnapshot", "shop", "items");
  assert.equal(report.snapshots[0].finished, true);
  assert.equal(endpoint.seen.length, 0);
  const [snapshot] = snapshots(runtime);
  assert.ok(snapshot.snapshotTime instanceof Timestamp);
  assert.ok(snapshot.finishedAt instanceof Date);
});

test("batches stay within snapshotBatchSize and batchMaxBytes; a refused batch is dead-lettered and the snapshot goes on", async (t) => {
  let refuse = 2;
  const seenBodies = [];
  const proxy = await startProxy("http://127.0.0.1:9/unused", (n) => {
    return n === refuse ? { status: 400, body: '{"error":"invalid_event"}' } : OK;
  });
  t.after(() => proxy.close());
  const runtime = runtimeFor(proxy.url, { options: { snapshotBatchSize: 4, batchMaxBytes: 1000, snapshotPageSize: 50 } });
  source(runtime).documents = Array.from({ length: 30 }, (_, n) => ({ _id: n, text: "x".repeat(n === 7 ? 2000 : 100) }));
  const report = await runtime.call("lakeSnapshot", "shop", "items");
  assert.equal(report.snapshots[0].finished, true);
  for (const request of proxy.seen) {
    const events = JSON.parse(request.body);
    seenBodies.push(events.length);
    assert.ok(events.length <= 4);
    assert.ok(Buffer.byteLength(request.body) <= 1000 || events.length === 1, "over batchMaxBytes only alone");
  }
  const letters = deadLetters(runtime).documents;
  const refusedCount = JSON.parse(proxy.seen[refuse - 1].body).length;
  assert.equal(letters.length, refusedCount);
  assert.ok(letters.every((letter) => letter.source === "snapshot" && letter.operationType === "snapshot" && letter.status === 400));
  // Each letter is one event's exact body, which lakeRedrive sends again as it is.
  const refused = EJSON.parse(proxy.seen[refuse - 1].body, { relaxed: false });
  assert.deepEqual(
    letters.map((letter) => letter.body),
    refused.map((event) => EJSON.stringify(event, { relaxed: false }))
  );
  assert.equal(snapshots(runtime)[0].deadLettered, refusedCount);
  assert.equal(snapshots(runtime)[0].sent, 30);
  refuse = 0;
  const redrive = await runtime.call("lakeRedrive");
  assert.equal(redrive.deadLetters.sent, refusedCount);
  assert.ok(seenBodies.length >= 8);
});

test("starting again continues the open snapshot; restart abandons it and starts anew", async (t) => {
  const runtime = runtimeFor(await deadUrl(), { options: { snapshotDeliveryBudgetMs: 50 } });
  source(runtime).documents = [{ _id: 1 }, { _id: 2 }];
  const first = await runtime.call("lakeSnapshot", "shop", "items");
  assert.match(first.snapshots[0].stoppedBy, /network/);
  await runtime.call("lakeSnapshot", "shop", "items");
  assert.equal(snapshots(runtime).length, 1, "one open snapshot per collection");
  runtime.clock.t += 1;
  await runtime.call("lakeSnapshot", "shop", "items", "restart");
  const [abandoned, fresh] = snapshots(runtime);
  assert.equal(abandoned.abandoned, true);
  assert.ok(abandoned.finishedAt instanceof Date);
  assert.equal(fresh.finishedAt, null);
  assert.ok(fresh.snapshotTime.greaterThan(abandoned.snapshotTime));
  await assert.rejects(runtime.call("lakeSnapshot", "shop"), /database and a collection/);
  await assert.rejects(runtime.call("lakeSnapshot", "shop", "items", "again"), /restart/);
});

test("a page boundary after every type of _id (NaN, MinKey, MaxKey included) skips nothing", async (t) => {
  const endpoint = await recordingEndpoint(t);
  const runtime = runtimeFor(endpoint.url, { options: { snapshotPageSize: 1 } });
  const ids = [
    new MinKey(), null, new Double(NaN), new Double(-Infinity), new Int32(1), Long.fromNumber(2), new Double(2.5),
    "", "a", { a: 1 }, new Binary(Buffer.from([1])), ObjectId.createFromHexString("00".repeat(12)),
    false, true, new Date(0), new Timestamp({ t: 1, i: 1 }), new MaxKey(),
  ];
  source(runtime).documents = shuffled(ids.map((_id) => ({ _id })));
  await runtime.call("lakeSnapshot", "shop", "items");
  assert.ok(snapshots(runtime)[0].finishedAt);
  assert.deepEqual(endpoint.events().map((event) => keyOf(event.documentKey._id)), ids.map(keyOf));
});
