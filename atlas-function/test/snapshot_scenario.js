// Issue #12's proof, the Atlas side: `node test/snapshot_scenario.js <handler url> <out dir>`
// (tests/snapshot_proof.rs runs it against the real handler, then checks the lake).
//
// A collection of 10,000 documents with _ids of every type is snapshotted by lakeSnapshot
// over several runs, each cut by a small time or operation budget, one of them in an
// outage (the endpoint answers 503: nothing progresses). Between runs, inserts, updates
// (with fullDocument) and deletes hit documents behind and ahead of the snapshot's cursor,
// each sent through the trigger's function (forwardChange); one document's two updates
// arrive in reverse order. The changes made in the outage are dead-lettered and arrive
// after the next run, through lakeRedrive. At the end it writes the collection's final state, one line per
// document in canonical Extended JSON ({"documentKey": {"_id"}, "document"}), to
// <out dir>/expected.jsonl, and prints a JSON summary (runs, stops, changes by side).
// Not a test file (`node --test` runs only *.test.js): alone it proves nothing.

"use strict";

const fs = require("node:fs");
const path = require("node:path");
const assert = require("node:assert/strict");
const { BSON } = require("bson");
const { startProxy, runtimeFor, deadLetters, state } = require("../harness");
const { keyOf, canonical, mixedDocuments, changeEvent } = require("./snapshot_fixtures");

const { Int32 } = BSON;

const NS = { db: "sample_mflix", coll: "movies" };
const OPTIONS = {
  snapshotPageSize: 250,
  snapshotBatchSize: 50,
  // The simulated limits: Atlas's 300 s and 1,000 operations, shrunk so that 10,000
  // documents take several runs (the operation budget ends most of them).
  snapshotRunBudgetMs: 4000,
  snapshotMaxOperationsPerRun: 80,
  // The outage run gives up after this long (retried meanwhile).
  snapshotDeliveryBudgetMs: 1000,
  // The trigger's changes in the outage: dead-lettered after 300 ms of retries each (no
  // circuit breaker), sent by lakeRedrive once the endpoint is back.
  retryBudgetMs: 300,
  breakerOpenMs: 0,
  attemptTimeoutMs: 20000,
};
/** The run (1-based) that meets the outage. */
const OUTAGE_RUN = 3;
/** Runs that only the time limit ends: a run stops 1 s before its budget, so these have
 * half a second, a page or two (the operation budget is out of reach). */
const TIME_LIMITED_RUNS = [4, 5];
const TIME_LIMITED = { snapshotRunBudgetMs: 1500, snapshotMaxOperationsPerRun: 1000 };

async function main() {
  const [url, out] = process.argv.slice(2);
  if (!url || !out) throw new Error("usage: node test/snapshot_scenario.js <handler url> <out dir>");
  const endpoint = { down: false };
  const proxy = await startProxy(url, () =>
    endpoint.down ? { status: 503, body: '{"error":"storage_unavailable"}' } : "forward"
  );
  try {
    const summary = await scenario(proxy.url, endpoint, out);
    process.stdout.write(JSON.stringify(summary) + "\n");
  } finally {
    await proxy.close();
  }
}

function openSnapshot(runtime) {
  return state(runtime).documents.find((document) => document.kind === "snapshot");
}

async function scenario(url, endpoint, out) {
  const runtime = runtimeFor(url, { options: OPTIONS });
  const items = runtime.collection("mongodb-atlas", NS.db, NS.coll);
  items.documents = mixedDocuments();
  const sorted = () => items.find({}).sort({ _id: 1 }).toArray();
  const counts = {};
  let n = 0;
  /** The trigger's function with the change's event; in the outage it dead-letters it. */
  const send = async (event) => {
    if (!endpoint.down) return runtime.call("forwardChange", event);
    await assert.rejects(runtime.call("forwardChange", event), /failed after/);
  };
  const forward = (operationType, document) => send(changeEvent(runtime, operationType, document, (n += 1), NS));
  // The keys in _id order, sorted again only after an insert (10,000 documents).
  let keys = null;
  /** Where `id` stands against the cursor (the last _id the snapshot delivered). */
  const sideOf = async (id) => {
    if (!openSnapshot(runtime)) return "before the snapshot";
    const last = openSnapshot(runtime).last;
    if (!last) return "ahead"; // no page delivered yet
    keys = keys || (await sorted()).map((document) => keyOf(document._id));
    const order = keys;
    const cursor = order.indexOf(keyOf(last.id));
    assert.ok(cursor >= 0, "the cursor's document exists");
    const at = order.indexOf(keyOf(id));
    return at <= cursor ? "behind" : "ahead";
  };
  const count = (operationType, side) => {
    const name = `${operationType} ${side}` + (endpoint.down ? " in the outage" : "");
    counts[name] = (counts[name] || 0) + 1;
  };
  const update = async (id, fields) => {
    const side = await sideOf(id);
    await items.updateOne({ _id: id }, { $set: fields });
    await forward("update", await items.findOne({ _id: id }));
    count("update", side);
  };
  const remove = async (id) => {
    const side = await sideOf(id);
    const document = await items.findOne({ _id: id });
    await items.deleteOne({ _id: id });
    await forward("delete", document);
    count("delete", side);
  };
  const insert = async (document) => {
    await items.insertOne(document);
    keys = null;
    await forward("insert", await items.findOne({ _id: document._id }));
    count("insert", await sideOf(document._id));
  };

  // A change before the snapshot starts: already in what it reads (the trigger ran first).
  const first = (await sorted())[20]._id;
  await update(first, { title: "changed before the snapshot" });

  const reports = [];
  const reinsert = [];
  let outage = null;
  for (let run = 1; !(openSnapshot(runtime) && openSnapshot(runtime).finishedAt); run += 1) {
    assert.ok(run <= 100, "the snapshot finishes");
    endpoint.down = run === OUTAGE_RUN;
    const timeLimited = TIME_LIMITED_RUNS.includes(run);
    Object.assign(runtime.values.lakeOptions, timeLimited ? TIME_LIMITED : OPTIONS);
    const sentBefore = openSnapshot(runtime) ? openSnapshot(runtime).sent : 0;
    const report = await runtime.call("lakeSnapshot", ...(run === 1 ? [NS.db, NS.coll] : []));
    const result = report.snapshots[0];
    reports.push(result.finished ? "finished" : result.stoppedBy);
    if (timeLimited) assert.equal(result.stoppedBy, "run budget", `run ${run}`);
    if (endpoint.down) {
      assert.match(result.stoppedBy, /HTTP 503/);
      assert.equal(openSnapshot(runtime).sent, sentBefore, "nothing progresses in an outage");
      outage = { run, stoppedBy: result.stoppedBy };
    } else if (outage && outage.redriven === undefined) {
      // The run after the outage is over: the scheduled redrive sends the trigger's dead
      // letters, later than the snapshot's pages that may have read the same documents.
      outage.deadLettered = deadLetters(runtime).documents.length;
      const redrive = await runtime.call("lakeRedrive");
      outage.redriven = redrive.deadLetters.sent;
      assert.equal(deadLetters(runtime).documents.length, 0, "every dead letter delivered");
    }
    if (result.finished) break;
    // Between runs (the trigger's changes meanwhile), with time moving on.
    runtime.clock.t += 600;
    const order = await sorted();
    keys = order.map((document) => keyOf(document._id));
    // The cursor's place: -1 before the first page is delivered.
    const last = openSnapshot(runtime).last;
    const cursor = last ? keys.indexOf(keyOf(last.id)) : -1;
    // Documents k places behind or ahead of the cursor (none past either end).
    const behind = (k) => (cursor - k > 0 ? order[cursor - k]._id : undefined);
    const ahead = (k) => (cursor + k < order.length - 1 ? order[cursor + k]._id : undefined);
    const some = (id, change) => (id === undefined ? undefined : change(id));
    await some(behind(100 + run), (id) => update(id, { changed: `behind the cursor, run ${run}` }));
    await some(ahead(600 + run * 7), (id) => update(id, { changed: `ahead of the cursor, run ${run}` }));
    await some(behind(50 + run), remove);
    await some(ahead(700 + run * 7), remove);
    for (const document of reinsert.splice(0)) await insert(document);
    await insert({ _id: new Int32(-run), title: `inserted, run ${run}` });
    await insert({ _id: new Date(Date.UTC(2030, 0, run)), title: `inserted, run ${run}` });
    // Deleted now, inserted again (other fields) after the next run.
    await some(behind(30 + run), async (gone) => {
      reinsert.push({ _id: gone, title: `inserted again, run ${run}` });
      await remove(gone);
    });
    // Updated twice, the second change arriving first (an unordered trigger).
    await some(ahead(900 + run), async (twice) => {
      const side = await sideOf(twice);
      await items.updateOne({ _id: twice }, { $set: { changed: "first of two" } });
      const firstEvent = changeEvent(runtime, "update", await items.findOne({ _id: twice }), (n += 1), NS);
      await update(twice, { changed: "second of two" });
      await send(firstEvent);
      count("update", side);
    });
    endpoint.down = false;
  }
  assert.equal(deadLetters(runtime).documents.length, 0, "nothing refused, nothing dead-lettered");
  const snapshot = openSnapshot(runtime);
  const final = await sorted();
  const lines = final.map((document) => canonical({ documentKey: { _id: document._id }, document }));
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, "expected.jsonl"), lines.join("\n") + "\n");
  const snapshotEvents = runtime.requests
    .filter((request) => request.body.startsWith("["))
    .reduce((total, request) => total + JSON.parse(request.body).length, 0);
  return {
    documents: final.length,
    runs: snapshot.runs,
    stops: reports,
    outage,
    changes: counts,
    snapshotEvents,
    sent: snapshot.sent,
    snapshotTime: { t: snapshot.snapshotTime.t, i: snapshot.snapshotTime.i },
    lastClusterTime: { t: runtime.clusterTime().t, i: runtime.clusterTime().i },
  };
}

main().catch((error) => {
  process.stderr.write(`snapshot_scenario: ${error.stack || error}\n`);
  process.exit(1);
});
