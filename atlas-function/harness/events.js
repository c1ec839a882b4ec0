// Change events as a database trigger hands them to its function: objects holding BSON
// values (Timestamp, Date, ObjectId, ...), built here from canonical Extended JSON.

"use strict";

const fs = require("node:fs");
const path = require("node:path");
const { EJSON } = require("bson");

const SAMPLES = path.resolve(__dirname, "../../samples");

/** Canonical Extended JSON text of an insert event `n` whose fullDocument is `document`. */
function insertEventText(n, document, ns = { db: "sample_mflix", coll: "movies" }) {
  const token = "82" + n.toString(16).toUpperCase().padStart(8, "0");
  const time = 1700000000 + n;
  return (
    `{"_id":{"_data":"${token}"},"operationType":"insert",` +
    `"clusterTime":{"$timestamp":{"t":${time},"i":1}},` +
    `"wallTime":{"$date":{"$numberLong":"${time * 1000}"}},` +
    `"ns":${JSON.stringify(ns)},"documentKey":{"_id":{"$numberInt":"${n}"}},` +
    `"fullDocument":${document}}`
  );
}

/** The event object a trigger would pass: insert `n` of a small movie document. */
function insertEvent(n, document = `{"_id":{"$numberInt":"${n}"},"title":"Movie ${n}"}`) {
  return EJSON.parse(insertEventText(n, document), { relaxed: false });
}

/** A sample event from samples/ as the trigger would pass it. */
function sampleEvent(name) {
  return EJSON.parse(fs.readFileSync(path.join(SAMPLES, name), "utf8"), { relaxed: false });
}

module.exports = { insertEvent, insertEventText, sampleEvent };
