// Every BSON type survives the whole trip: a change event holding each document of
// MongoDB's BSON conformance corpus is serialised by forwardChange (EJSON, canonical),
// signed, posted to the real handler (RECORD_ENCODING=canonical), written to the lake, and
// read back: the record's `data`, re-encoded as BSON, is byte-for-byte the corpus's
// canonical_bson (types, values and key order).

"use strict";

const fs = require("node:fs");
const path = require("node:path");
const test = require("node:test");
const assert = require("node:assert/strict");
const { EJSON, BSON } = require("bson");
const { startHandler, runtimeFor, deadLetters, corpusDir, insertEventText, SECRET } = require("../harness");

/**
 * Valid corpus cases whose document the npm `bson` package (standing in for Atlas's EJSON)
 * can hold exactly. With bson 6.10 that leaves out 5 of the corpus's non-lossy cases:
 * the 3 DBPointer cases and "All BSON types" of multi-type-deprecated.json (it reads
 * DBPointer as a DBRef document) and undefined.json's Undefined (it reads undefined as
 * null). Lossy cases (NaN payloads, invalid Decimal128 forms) have no exact form to compare.
 */
function corpusCases() {
  const dir = corpusDir();
  const cases = [];
  const unrepresentable = [];
  let lossy = 0;
  for (const file of fs.readdirSync(dir).filter((name) => name.endsWith(".json")).sort()) {
    const corpus = JSON.parse(fs.readFileSync(path.join(dir, file), "utf8"));
    for (const valid of corpus.valid || []) {
      const name = `${file}: ${valid.description}`;
      if (valid.lossy) {
        lossy += 1;
        continue;
      }
      const document = EJSON.parse(valid.canonical_extjson, { relaxed: false });
      const bson = Buffer.from(BSON.serialize(document)).toString("hex").toUpperCase();
      if (bson !== valid.canonical_bson.toUpperCase()) {
        unrepresentable.push(name);
        continue;
      }
      cases.push({ name, extjson: valid.canonical_extjson, bson });
    }
  }
  return { cases, unrepresentable, lossy };
}

test("events of every BSON type round-trip exactly into the lake", async (t) => {
  const { cases, unrepresentable, lossy } = corpusCases();
  assert.ok(cases.length > 600, `only ${cases.length} corpus cases`);
  assert.ok(
    unrepresentable.length <= 5,
    `the bson package cannot hold ${unrepresentable.length} cases:\n${unrepresentable.join("\n")}`
  );
  t.diagnostic(`${cases.length} cases compared; ${lossy} lossy and ${unrepresentable.length} the bson package cannot hold left out`);

  // One folder per case ({db}/{coll}, coll = c<n>), so each record is found without a scan.
  const handler = await startHandler({
    INGEST_HMAC_SECRET: SECRET,
    RECORD_ENCODING: "canonical",
    PATH_TEMPLATE: "{db}/{coll}",
  });
  t.after(() => handler.stop());
  const runtime = runtimeFor(handler.url);

  const failures = [];
  for (const [index, testCase] of cases.entries()) {
    const n = index + 1;
    const text = insertEventText(n, testCase.extjson, { db: "corpus", coll: `c${n}` });
    const event = EJSON.parse(text, { relaxed: false });
    try {
      const result = await runtime.call("forwardChange", event);
      assert.equal(result.delivered, true);
      const folder = path.join(handler.lake, "mongodb", "changes", "corpus", `c${n}`);
      const names = fs.readdirSync(folder);
      assert.equal(names.length, 1, `files in ${folder}`);
      const record = EJSON.parse(fs.readFileSync(path.join(folder, names[0]), "utf8"), { relaxed: false });
      assert.equal(record.eventId, event._id._data);
      const stored = Buffer.from(BSON.serialize(record.data)).toString("hex").toUpperCase();
      if (stored !== testCase.bson) {
        failures.push(`${testCase.name}: stored ${stored}, expected ${testCase.bson}`);
      }
    } catch (error) {
      failures.push(`${testCase.name}: ${error.message}`);
    }
  }
  assert.equal(deadLetters(runtime).documents.length, 0);
  assert.deepEqual(failures, [], `${failures.length} failures:\n${failures.join("\n")}`);
});
