// What the snapshot tests and the snapshot proof (snapshot_scenario.js) share: documents
// whose _ids are of every type, change events as the trigger hands them over, and how keys
// and documents are compared. Not a test file: `node --test` runs only *.test.js.

"use strict";

const assert = require("node:assert/strict");
const { EJSON, BSON } = require("bson");

const { Int32, Long, Double, Decimal128, ObjectId, MinKey, MaxKey, Timestamp, Binary } = BSON;

/** A key's canonical Extended JSON text: equal _ids, equal texts. */
function keyOf(id) {
  return EJSON.stringify({ id }, { relaxed: false });
}

function canonical(value) {
  return EJSON.stringify(value, { relaxed: false });
}

/** A deterministic shuffle (the collection's natural order is not _id order). */
function shuffled(list) {
  let seed = 12345;
  const copy = list.slice();
  for (let i = copy.length - 1; i > 0; i -= 1) {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    const j = seed % (i + 1);
    [copy[i], copy[j]] = [copy[j], copy[i]];
  }
  return copy;
}

/** 10,000 documents whose _ids are of every type an _id can have, numbers of four types. */
function mixedDocuments() {
  const documents = [{ _id: null }, { _id: new MinKey() }, { _id: new MaxKey() }, { _id: true }, { _id: false }];
  for (let n = 0; n < 4000; n += 1) {
    const kinds = [new Int32(n), Long.fromNumber(n), new Double(n + 0.5), n];
    documents.push({ _id: kinds[n % 4], n });
  }
  documents.push({ _id: Decimal128.fromString("-1.5") }, { _id: new Double(-Infinity) });
  for (let n = 0; n < 3000; n += 1) documents.push({ _id: `key ${n} ${n % 7 === 0 ? "é\u{1F600}" : ""}`, n });
  for (let n = 0; n < 2000; n += 1) documents.push({ _id: ObjectId.createFromHexString(n.toString(16).padStart(24, "0")), n });
  for (let n = 0; n < 692; n += 1) documents.push({ _id: new Date(Date.UTC(2020, 0, 1) + n * 3600000), n });
  for (let n = 0; n < 100; n += 1) documents.push({ _id: new Timestamp({ t: 1600000000 + n, i: 1 }), n });
  for (let n = 0; n < 100; n += 1) documents.push({ _id: new Binary(Buffer.from([n % 256, 1, 2]), n % 2 ? 0 : 0x80), n });
  for (let n = 0; n < 100; n += 1) documents.push({ _id: { a: n, b: "x" }, n });
  assert.equal(documents.length, 9999);
  documents.push({ _id: Decimal128.fromString("NaN") });
  return shuffled(documents);
}

/** A change event at the cluster's current time, as the trigger hands it over: its resume
 * token starts with 82 and the cluster time, as MongoDB's do. */
function changeEvent(runtime, operationType, document, n, ns = { db: "shop", coll: "items" }) {
  const time = runtime.clusterTime();
  const hex = (value) => value.toString(16).toUpperCase().padStart(8, "0");
  const event = {
    _id: { _data: "82" + hex(time.t) + hex(time.i) + "2B042C0100296E5A1004" + hex(n) + "04" },
    operationType,
    clusterTime: time,
    wallTime: new Date(time.t * 1000),
    ns,
    documentKey: { _id: document._id },
  };
  if (operationType !== "delete") event.fullDocument = document;
  return event;
}

module.exports = { keyOf, canonical, shuffled, mixedDocuments, changeEvent };
