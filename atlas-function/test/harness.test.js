// The collection double behaves as the MongoDB driver does for the calls the functions
// make; the functions' tests are only as good as that.

"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { Collection } = require("../harness");

test("insertMany: ordered stops at the first duplicate, unordered inserts the rest and lists every duplicate", async () => {
  const collection = new Collection("db.c");
  assert.deepEqual(await collection.insertMany([{ _id: 1 }, { _id: 2 }]), { insertedIds: [1, 2] });

  const ordered = await collection.insertMany([{ _id: 3 }, { _id: 1 }, { _id: 4 }]).catch((error) => error);
  assert.equal(ordered.code, 11000);
  assert.deepEqual(ordered.writeErrors.map((error) => [error.index, error.code]), [[1, 11000]]);
  assert.deepEqual(collection.documents.map((document) => document._id), [1, 2, 3]);

  const unordered = await collection
    .insertMany([{ _id: 5 }, { _id: 1 }, { _id: 6 }, { _id: 2 }], { ordered: false })
    .catch((error) => error);
  assert.equal(unordered.name, "MongoBulkWriteError");
  assert.match(unordered.message, /^E11000 duplicate key error/);
  assert.deepEqual(unordered.writeErrors.map((error) => [error.index, error.code]), [[1, 11000], [3, 11000]]);
  assert.equal(unordered.insertedCount, 2);
  assert.deepEqual(unordered.insertedIds, { 0: 5, 2: 6 });
  assert.deepEqual(collection.documents.map((document) => document._id), [1, 2, 3, 5, 6]);
});

test("updateOne with upsert, $unset; findOne and projections", async () => {
  const collection = new Collection("db.c");
  const when = new Date();
  assert.deepEqual(await collection.updateOne({ _id: "k" }, { $set: { a: 1 } }), { matchedCount: 0, modifiedCount: 0 });
  assert.equal(collection.documents.length, 0);
  assert.deepEqual(await collection.updateOne({ _id: "k" }, { $set: { a: 1, when } }, { upsert: true }), {
    matchedCount: 0,
    modifiedCount: 0,
    upsertedId: "k",
  });
  assert.deepEqual(await collection.findOne({ _id: "k" }), { _id: "k", a: 1, when });
  // A compare-and-set on a date.
  assert.equal((await collection.updateOne({ _id: "k", when: new Date(when.getTime() + 1) }, { $set: { a: 2 } })).matchedCount, 0);
  assert.equal((await collection.updateOne({ _id: "k", when }, { $set: { a: 2 }, $unset: { when: "" } })).matchedCount, 1);
  assert.deepEqual(await collection.findOne({ _id: "k" }), { _id: "k", a: 2 });
  assert.equal(await collection.findOne({ _id: "none" }), null);

  await collection.insertOne({ _id: "p", a: 1, b: 2 });
  assert.deepEqual(await collection.findOne({ _id: "p" }, { a: 1 }), { _id: "p", a: 1 });
  assert.deepEqual(await collection.findOne({ _id: "p" }, { a: 1, _id: 0 }), { a: 1 });
  assert.deepEqual(await collection.findOne({ _id: "p" }, { b: 0 }), { _id: "p", a: 1 });
  assert.deepEqual(await collection.find({ _id: "p" }, { _id: 1 }).toArray(), [{ _id: "p" }]);
  assert.deepEqual(collection.calls.findOne, 6);
});
