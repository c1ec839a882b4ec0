// lakeSnapshot: the initial snapshot of a collection into the lake (issue #12). A database
// trigger only sees changes from its start; this sends the documents that already exist.
//
//   lakeSnapshot("sample_mflix", "movies")             start one (or go on with the open one)
//   lakeSnapshot("sample_mflix", "movies", "restart")  abandon the open one, start anew
//   lakeSnapshot()                                     the scheduled trigger: go on with every
//                                                      open snapshot; nothing once all finished
//
// Exactness comes from the order of steps: the database trigger runs first; a snapshot then
// records its start cluster time S (the $$CLUSTER_TIME of a read, stored in its state
// document before any page is read) and reads every page after it. A change after S arrives
// through the trigger, and the handler orders a snapshot record (in the hour of S) before
// every change after S, so "latest per key by eventId" is the collection's state whatever
// the order of arrival.
//
// Pages are read in _id order and posted as JSON arrays of snapshot events
// ({"operationType":"snapshot","ns","documentKey","fullDocument","snapshotTime"}, canonical
// Extended JSON like forwardChange) through lakeDeliver: signed, with the function key,
// retried. Progress (the last _id of a page fully delivered, counts, times) is one document
// per snapshot in the state collection, updated after each page: a run that reaches its time
// or operation budget, or meets an outage, stops and the next run resends at most one page
// (the handler stores each event once). A batch the handler refuses for good is
// dead-lettered (lakeRedrive sends it again) and the snapshot goes on.
//
// _id order over mixed types: MongoDB sorts _id by type (in BSON type order), then value, but
// a query's $gt only matches values of its operand's type bracket. The page after `last` is
// therefore {$or: [{_id: {$gt: last}}, {_id: {$type: <every later type bracket>}}]}, sorted
// by _id: both branches are served by the _id index.
//
// Returns and logs counts only, never documents or _ids.

// The types an _id can have, in MongoDB's sort order, grouped in the brackets a $gt compares
// within (an _id is never an array, undefined or a regular expression; the last is kept for
// the order's sake).
const TYPE_BRACKETS = [
  ["minKey"],
  ["null"],
  ["int", "long", "double", "decimal"],
  ["symbol", "string"],
  ["object"],
  ["binData"],
  ["objectId"],
  ["bool"],
  ["date"],
  ["timestamp"],
  ["regex"],
  ["dbPointer"],
  ["javascript"],
  ["javascriptWithScope"],
  ["maxKey"],
];

const BSON_TYPE_ALIASES = {
  MinKey: "minKey",
  MaxKey: "maxKey",
  Int32: "int",
  Double: "double",
  Long: "long",
  Decimal128: "decimal",
  BSONSymbol: "symbol",
  Binary: "binData",
  ObjectId: "objectId",
  Timestamp: "timestamp",
  BSONRegExp: "regex",
  DBRef: "object",
};

exports = async function lakeSnapshot(database, collection, command) {
  const options = await context.functions.execute("lakeConfig");
  options.problems.forEach(function (problem) {
    console.error("lakeOptions: " + problem);
  });
  const state = context.services
    .get(options.dataSource)
    .db(options.database)
    .collection(options.stateCollection);
  const budget = {
    deadline: Date.now() + options.snapshotRunBudgetMs,
    operations: 0,
    maxOperations: options.snapshotMaxOperationsPerRun,
  };
  let ids;
  if (database === undefined && collection === undefined) {
    ids = await openSnapshots(state);
  } else {
    if (typeof database !== "string" || database.length === 0 || typeof collection !== "string" || collection.length === 0) {
      throw new Error('lakeSnapshot needs a database and a collection name: lakeSnapshot("db", "coll")');
    }
    if (command !== undefined && command !== "restart") {
      throw new Error('lakeSnapshot\'s third argument is "restart" or nothing');
    }
    ids = [await begin(state, database, collection, command === "restart")];
  }
  const report = { snapshots: [] };
  for (const id of ids) {
    const result = await run(state, id, options, budget);
    report.snapshots.push(result);
    if (result.stoppedBy) {
      break;
    }
  }
  console.log("lakeSnapshot: " + JSON.stringify(report));
  return report;
};

// The unfinished snapshots, oldest first (a handful of documents: no index needed).
async function openSnapshots(state) {
  const open = await state.find({ kind: "snapshot", finishedAt: null }, { _id: 1, startedAt: 1 }).toArray();
  open.sort(function (a, b) {
    return a.startedAt - b.startedAt;
  });
  return open.map(function (snapshot) {
    return snapshot._id;
  });
}

// The open snapshot of the collection, or a new one. "restart" marks the open one finished
// (abandoned: true) first, so a run still going on it stops at its next page.
async function begin(state, database, collection, restart) {
  const open = await state.findOne({ kind: "snapshot", db: database, coll: collection, finishedAt: null }, { _id: 1 });
  if (open && !restart) {
    return open._id;
  }
  if (open) {
    await state.updateOne({ _id: open._id, finishedAt: null }, { $set: { finishedAt: new Date(), abandoned: true } });
  }
  const id = "snapshot " + database + "." + collection + " " + new BSON.ObjectId().toHexString();
  await state.insertOne({
    _id: id,
    kind: "snapshot",
    db: database,
    coll: collection,
    // S: set before the first page is read (below), never changed afterwards.
    snapshotTime: null,
    // {id: <the last _id of the last page delivered>}, null before the first page.
    last: null,
    sent: 0,
    posts: 0,
    deadLettered: 0,
    runs: 0,
    startedAt: new Date(),
    lastRunAt: null,
    finishedAt: null,
  });
  return id;
}

async function run(state, id, options, budget) {
  const snapshot = await state.findOne({ _id: id });
  budget.operations += 1;
  const result = { ns: null, pages: 0, sent: 0, posts: 0, deadLettered: 0, finished: false, stoppedBy: null };
  if (!snapshot || snapshot.finishedAt) {
    result.finished = true;
    return result;
  }
  result.ns = snapshot.db + "." + snapshot.coll;
  if (!snapshot.snapshotTime) {
    // Recorded before any page is read: every page reflects the collection at S or later.
    snapshot.snapshotTime = await clusterTime(state, id);
    await state.updateOne({ _id: id }, { $set: { snapshotTime: snapshot.snapshotTime } });
    budget.operations += 2;
  }
  await state.updateOne({ _id: id }, { $inc: { runs: 1 }, $set: { lastRunAt: new Date() } });
  budget.operations += 1;
  const source = context.services.get(options.dataSource).db(snapshot.db).collection(snapshot.coll);
  let last = snapshot.last;
  for (;;) {
    const stop = exhausted(budget, options);
    if (stop) {
      result.stoppedBy = stop;
      return result;
    }
    const page = await source.find(after(last)).sort({ _id: 1 }).limit(options.snapshotPageSize).toArray();
    budget.operations += 1;
    if (page.length === 0) {
      await state.updateOne({ _id: id, finishedAt: null }, { $set: { finishedAt: new Date() } });
      result.finished = true;
      return result;
    }
    const sent = await sendPage(page, snapshot, options, budget);
    result.posts += sent.posts;
    result.deadLettered += sent.deadLettered;
    if (sent.stoppedBy) {
      result.stoppedBy = sent.stoppedBy;
      return result;
    }
    last = { id: page[page.length - 1]._id };
    const saved = await state.updateOne(
      { _id: id, finishedAt: null },
      { $set: { last: last }, $inc: { sent: page.length, posts: sent.posts, deadLettered: sent.deadLettered } }
    );
    budget.operations += 1;
    result.pages += 1;
    result.sent += page.length;
    if (saved.matchedCount === 0) {
      result.stoppedBy = "abandoned (restarted)";
      return result;
    }
  }
}

// Why the run must stop before another page or batch, or null: its time, or the async
// operations Atlas allows a run (a delivery costs the call, its options and its attempts).
function exhausted(budget, options) {
  if (budget.deadline - Date.now() < Math.min(options.attemptTimeoutMs, 1000)) {
    return "run budget";
  }
  if (budget.operations + 4 > budget.maxOperations) {
    return "operation budget";
  }
  return null;
}

// The cluster's time as a read sees it (a Timestamp): $$CLUSTER_TIME, read through the
// snapshot's own state document so that it answers even for an empty collection.
async function clusterTime(state, id) {
  const rows = await state
    .aggregate([{ $match: { _id: id } }, { $project: { _id: 0, now: "$$CLUSTER_TIME" } }])
    .toArray();
  if (rows.length === 0 || !rows[0].now) {
    throw new Error("lakeSnapshot could not read the cluster time ($$CLUSTER_TIME)");
  }
  return rows[0].now;
}

// The filter of the page after `last` in MongoDB's _id order: greater values of the same
// type bracket, and every value of a later bracket. A NaN sorts first among numbers but
// no number is $gt NaN, so after NaN comes every other number.
function after(last) {
  if (!last) {
    return {};
  }
  const bracket = bracketOf(last.id);
  const later = [].concat.apply([], TYPE_BRACKETS.slice(bracket + 1));
  const same = isNaNNumber(last.id) ? { _id: { $gte: -Infinity } } : { _id: { $gt: last.id } };
  return later.length > 0 ? { $or: [same, { _id: { $type: later } }] } : same;
}

function bracketOf(value) {
  const alias = typeAlias(value);
  for (let i = 0; i < TYPE_BRACKETS.length; i += 1) {
    if (TYPE_BRACKETS[i].indexOf(alias) >= 0) {
      return i;
    }
  }
  throw new Error("lakeSnapshot cannot page over an _id of type " + alias);
}

function typeAlias(value) {
  if (value === null || value === undefined) {
    return "null";
  }
  if (typeof value === "number" || typeof value === "bigint") {
    return "double";
  }
  if (typeof value === "string") {
    return "string";
  }
  if (typeof value === "boolean") {
    return "bool";
  }
  if (value instanceof Date) {
    return "date";
  }
  if (value._bsontype === "Code") {
    return value.scope ? "javascriptWithScope" : "javascript";
  }
  return BSON_TYPE_ALIASES[value._bsontype] || "object";
}

function isNaNNumber(value) {
  if (typeof value === "number") {
    return isNaN(value);
  }
  const kind = value && value._bsontype;
  return (kind === "Double" || kind === "Decimal128") && /nan/i.test(value.toString());
}

// Posts a page as JSON arrays of at most snapshotBatchSize events and batchMaxBytes.
// Stops (without dead letters) when the endpoint is unreachable or unwell or the budget
// ends: the page is sent again by the next run.
async function sendPage(page, snapshot, options, budget) {
  const sent = { posts: 0, deadLettered: 0, stoppedBy: null };
  const events = page.map(function (document) {
    return eventOf(document, snapshot);
  });
  let start = 0;
  while (start < events.length) {
    const stop = exhausted(budget, options);
    if (stop) {
      sent.stoppedBy = stop;
      return sent;
    }
    const batch = nextBatch(events, start, options);
    start += batch.length;
    const unsendable = batch.filter(function (event) {
      return event.body === null;
    });
    const bodies = batch.filter(function (event) {
      return event.body !== null;
    });
    let outcome = { ok: true, attempts: 0 };
    if (bodies.length > 0) {
      const body = "[" + bodies.map(function (event) {
        return event.body;
      }).join(",") + "]";
      outcome = await context.functions.execute("lakeDeliver", body, {
        retryBudgetMs: Math.min(options.snapshotDeliveryBudgetMs, budget.deadline - Date.now()),
      });
      budget.operations += 2 + 2 * outcome.attempts;
      sent.posts += 1;
      if (!outcome.ok && !outcome.permanent) {
        sent.stoppedBy = outcome.error;
        return sent;
      }
    }
    const refused = outcome.ok ? unsendable : unsendable.concat(bodies);
    if (refused.length > 0) {
      await deadLetter(refused, snapshot, outcome);
      budget.operations += 2;
      sent.deadLettered += refused.length;
    }
  }
  return sent;
}

// One snapshot event: its body (canonical Extended JSON), its size, and what a dead letter
// keeps of it. A document that cannot be serialised keeps its event object instead.
function eventOf(document, snapshot) {
  const event = {
    operationType: "snapshot",
    ns: { db: snapshot.db, coll: snapshot.coll },
    documentKey: { _id: document._id },
    fullDocument: document,
    snapshotTime: snapshot.snapshotTime,
  };
  const time = snapshot.snapshotTime;
  const key = "snapshot " + time.t + "." + time.i + " " + snapshot.db + "." + snapshot.coll + " ";
  try {
    const body = EJSON.stringify(event, { relaxed: false });
    return { body: body, bytes: utf8Length(body), event: null, eventId: key + EJSON.stringify(document._id, { relaxed: false }) };
  } catch (error) {
    return { body: null, bytes: 0, event: event, eventId: key + new BSON.ObjectId().toHexString(),
      error: "cannot serialise the event: " + (error && error.message ? error.message : String(error)) };
  }
}

// The events from `start` that fit in one request: at least one, at most snapshotBatchSize,
// and (as a JSON array) at most batchMaxBytes.
function nextBatch(events, start, options) {
  let bytes = 2;
  let end = start;
  while (end < events.length && end - start < options.snapshotBatchSize) {
    bytes += events[end].bytes + 1;
    if (end > start && bytes > options.batchMaxBytes) {
      break;
    }
    end += 1;
  }
  return events.slice(start, end);
}

// The UTF-8 length of a JSON text (EJSON escapes lone surrogates, so the text is well
// formed); three bytes per unit if it is not, an upper bound.
function utf8Length(text) {
  try {
    return encodeURIComponent(text).replace(/%[0-9A-F]{2}/g, "x").length;
  } catch (error) {
    return text.length * 3;
  }
}

// Refused events become dead letters (one insertMany): lakeRedrive sends them again one by
// one; the snapshot goes on.
async function deadLetter(events, snapshot, outcome) {
  await context.functions.execute("lakeDeadLetter", events.map(function (event) {
    return {
      eventId: event.eventId,
      body: event.body,
      rawEvent: event.event,
      about: { operationType: "snapshot", ns: { db: snapshot.db, coll: snapshot.coll } },
      outcome: event.body === null ? { ok: false, permanent: true, attempts: 0, error: event.error } : outcome,
      source: "snapshot",
    };
  }));
}
