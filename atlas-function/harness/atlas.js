// A stand-in for the Atlas Functions runtime, enough to run app/functions/*.js as Atlas
// would: each file's text (`exports = ...`) is evaluated with the globals Atlas provides
// (`context`, `EJSON`, `BSON`, `utils`, `console`) and called by name.
//
// - context.http.post does real HTTP (Node's fetch) and answers in Atlas's shape:
//   { status, statusCode, contentLength, headers: { Name: [values] }, cookies, body } with
//   body.text();
// - context.values.get reads a plain object of values (secrets included, as Atlas exposes
//   them to functions);
// - context.services.get(name).db(db).collection(coll) is an in-memory collection with the
//   calls the functions use, as the driver behaves: insertOne (duplicate _id -> E11000),
//   insertMany (ordered or not; duplicates -> a BulkWriteError listing code 11000 write
//   errors), find(filter, projection).sort().limit().toArray(), findOne(filter, projection)
//   (null when none), updateOne ($set, $unset, $inc; {upsert: true}), deleteOne, deleteMany,
//   count (Atlas's name: its MongoDB API has no countDocuments), and aggregate for
//   "$$CLUSTER_TIME" (the read's cluster time: a clock every write moves on). Values compare
//   as MongoDB compares them: BSON types in the server's type order for sorts and
//   equality, $gt/$gte/$lt/$lte type-bracketed, $type and $or as the server has them. Each collection counts its
//   calls (`calls`), the size of what its reads returned (`reads`), for tests about Atlas's
//   limits, and the sort orders asked of it (`sorts`), for tests about its indexes;
// - context.functions.execute(name, ...args) loads and calls another function file;
// - EJSON and BSON are the npm `bson` package, MongoDB's own implementation.

"use strict";

const fs = require("node:fs");
const path = require("node:path");
const crypto = require("node:crypto");
const { EJSON, BSON } = require("bson");

const FUNCTIONS_DIR = path.resolve(__dirname, "../app/functions");

class DuplicateKeyError extends Error {
  constructor(collection, id) {
    super(duplicateMessage(collection, id));
    this.code = 11000;
  }
}

function duplicateMessage(collection, id) {
  return `E11000 duplicate key error collection: ${collection} index: _id_ dup key: { _id: ${JSON.stringify(id)} }`;
}

/**
 * What the driver throws when some documents of an insertMany fail (MongoBulkWriteError):
 * the first write error's message and code, every write error with the index of its
 * document, and what was inserted nevertheless.
 */
class BulkWriteError extends Error {
  constructor(writeErrors, inserted) {
    super(writeErrors[0].errmsg);
    this.name = "MongoBulkWriteError";
    this.code = writeErrors[0].code;
    this.writeErrors = writeErrors;
    this.insertedCount = inserted.length;
    // Keyed by the index of the document in the call, as the driver reports them.
    this.insertedIds = Object.fromEntries(inserted.map(({ index, id }) => [index, id]));
  }
}

/**
 * MongoDB's order of types (the server's canonical type ranks): values of different types
 * compare by rank; numbers of any type compare as numbers, strings with symbols.
 */
function typeRank(value) {
  if (value === undefined) return 0;
  if (value === null) return 5;
  if (typeof value === "number" || typeof value === "bigint") return 10;
  if (typeof value === "string") return 15;
  if (typeof value === "boolean") return 40;
  if (value instanceof Date) return 45;
  if (value instanceof RegExp) return 50;
  if (Array.isArray(value)) return 25;
  const ranks = {
    MinKey: -1, MaxKey: 127, Int32: 10, Double: 10, Long: 10, Decimal128: 10, BSONSymbol: 15,
    Binary: 30, ObjectId: 35, Timestamp: 47, BSONRegExp: 50,
  };
  if (value._bsontype === "Code") return value.scope ? 65 : 60;
  return value._bsontype in ranks ? ranks[value._bsontype] : 20;
}

/** `$type` aliases of a value, as the server names them (a plain JS number is what the
 * driver would store: an int32 when it is a whole number in range, else a double). */
function typeAlias(value) {
  if (value === undefined) return "undefined";
  if (value === null) return "null";
  if (typeof value === "number") return Number.isInteger(value) && Math.abs(value) < 2 ** 31 ? "int" : "double";
  if (typeof value === "bigint") return "long";
  if (typeof value === "string") return "string";
  if (typeof value === "boolean") return "bool";
  if (value instanceof Date) return "date";
  if (value instanceof RegExp) return "regex";
  if (Array.isArray(value)) return "array";
  const aliases = {
    MinKey: "minKey", MaxKey: "maxKey", Int32: "int", Double: "double", Long: "long", Decimal128: "decimal",
    BSONSymbol: "symbol", Binary: "binData", ObjectId: "objectId", Timestamp: "timestamp", BSONRegExp: "regex",
  };
  if (value._bsontype === "Code") return value.scope ? "javascriptWithScope" : "javascript";
  return aliases[value._bsontype] || "object";
}

function numberOf(value) {
  if (typeof value === "number" || typeof value === "bigint") return value;
  if (value._bsontype === "Long") return BigInt(value.toString());
  if (value._bsontype === "Decimal128") return Number(value.toString());
  return Number(value.valueOf());
}

function compareNumbers(a, b) {
  const x = numberOf(a);
  const y = numberOf(b);
  const xNaN = typeof x === "number" && Number.isNaN(x);
  const yNaN = typeof y === "number" && Number.isNaN(y);
  // NaN sorts before every other number and equals itself.
  if (xNaN || yNaN) return xNaN && yNaN ? 0 : xNaN ? -1 : 1;
  return x < y ? -1 : x > y ? 1 : 0;
}

/** Strings compare by their UTF-8 bytes (the simple binary collation). */
function compareStrings(a, b) {
  return Math.sign(Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8")));
}

function compareBytes(a, b) {
  return Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b)));
}

/** Embedded documents: element by element (type, then name, then value); a prefix first. */
function compareDocuments(a, b) {
  const x = Object.entries(a).filter(([, value]) => value !== undefined);
  const y = Object.entries(b).filter(([, value]) => value !== undefined);
  for (let i = 0; i < Math.min(x.length, y.length); i += 1) {
    const byType = typeRank(x[i][1]) - typeRank(y[i][1]);
    if (byType !== 0) return Math.sign(byType);
    const byName = compareStrings(x[i][0], y[i][0]);
    if (byName !== 0) return byName;
    const byValue = compare(x[i][1], y[i][1]);
    if (byValue !== 0) return byValue;
  }
  return Math.sign(x.length - y.length);
}

/** Two values in MongoDB's sort order (a missing field sorts as null). */
function compare(a, b) {
  const x = a === undefined ? null : a;
  const y = b === undefined ? null : b;
  const byRank = typeRank(x) - typeRank(y);
  if (byRank !== 0) return Math.sign(byRank);
  switch (typeRank(x)) {
    case -1:
    case 5:
    case 127:
      return 0;
    case 10:
      return compareNumbers(x, y);
    case 15:
      return compareStrings(String(x.valueOf()), String(y.valueOf()));
    case 20:
      return compareDocuments(x, y);
    case 25:
      return compareDocuments(Object.assign({}, x), Object.assign({}, y));
    case 30:
      return Math.sign(x.buffer.length - y.buffer.length) || Math.sign(x.sub_type - y.sub_type) || compareBytes(x.buffer, y.buffer);
    case 35:
      return compareBytes(x.id, y.id);
    case 40:
      return Math.sign(Number(x) - Number(y));
    case 45:
      return Math.sign(x.getTime() - y.getTime());
    case 47:
      return Math.sign(x.t - y.t) || Math.sign(x.i - y.i);
    case 50:
      return compareStrings(x.source ?? x.pattern, y.source ?? y.pattern) || compareStrings(x.flags ?? x.options, y.flags ?? y.options);
    default:
      return compareStrings(x.code, y.code) || compareDocuments(x.scope || {}, y.scope || {});
  }
}

function same(a, b) {
  return compare(a, b) === 0;
}

/**
 * $gt and friends as a query applies them: type-bracketed (only values of the operand's
 * type bracket can match), except against MinKey and MaxKey, which every value exceeds or
 * stays below. NaN is neither greater nor less than any number.
 */
function inRange(value, operand, accept) {
  if (value === undefined) return false;
  const rank = typeRank(operand);
  if (rank !== -1 && rank !== 127 && typeRank(value) !== rank) return false;
  if (rank === 10) {
    const x = numberOf(value);
    const y = numberOf(operand);
    if (Number.isNaN(x) || Number.isNaN(y)) {
      return Number.isNaN(x) && Number.isNaN(y) && accept(0);
    }
  }
  return accept(compare(value, operand));
}

/** An operator object ({$gt: ...}), as opposed to a value to compare with (a document, an ObjectId). */
function isOperators(condition) {
  if (!condition || typeof condition !== "object" || condition._bsontype || condition instanceof Date || Array.isArray(condition)) {
    return false;
  }
  const keys = Object.keys(condition);
  return keys.length > 0 && keys.every((key) => key.startsWith("$"));
}

function matches(document, filter) {
  return Object.keys(filter).every((field) => {
    const condition = filter[field];
    if (field === "$or") return condition.some((branch) => matches(document, branch));
    const value = document[field];
    if (isOperators(condition)) {
      return Object.keys(condition).every((operator) => {
        const operand = condition[operator];
        switch (operator) {
          case "$in":
            return operand.some((candidate) => same(value, candidate));
          case "$lte":
            return inRange(value, operand, (c) => c <= 0);
          case "$lt":
            return inRange(value, operand, (c) => c < 0);
          case "$gte":
            return inRange(value, operand, (c) => c >= 0);
          case "$gt":
            return inRange(value, operand, (c) => c > 0);
          case "$type":
            return value !== undefined && [].concat(operand).includes(typeAlias(value));
          default:
            throw new Error(`the collection double does not support ${operator}`);
        }
      });
    }
    if (value === undefined) return condition === null;
    return typeRank(value) === typeRank(condition) && same(value, condition);
  });
}

/** A deep copy that keeps BSON values (ObjectId, Int32, ...) as they are: structuredClone
 * would turn them into plain objects. BSON values are immutable, so sharing them is safe. */
function clone(value) {
  if (value === null || typeof value !== "object" || value._bsontype) return value;
  if (value instanceof Date) return new Date(value.getTime());
  if (Array.isArray(value)) return value.map(clone);
  return Object.fromEntries(Object.entries(value).map(([key, entry]) => [key, clone(entry)]));
}

/** A top-level projection as MongoDB applies it: inclusion ({a: 1}, _id kept unless {_id: 0}) or exclusion ({a: 0}). */
function project(document, projection) {
  if (!projection || Object.keys(projection).length === 0) return document;
  const fields = Object.keys(projection);
  const others = fields.filter((field) => field !== "_id");
  const including = others.length > 0 ? others.some((field) => isInclusion(projection[field])) : isInclusion(projection._id);
  const result = {};
  if (including) {
    if (projection._id === undefined || isInclusion(projection._id)) {
      if (document._id !== undefined) result._id = document._id;
    }
    for (const field of fields) {
      if (field !== "_id" && document[field] !== undefined) result[field] = document[field];
    }
    return result;
  }
  for (const field of Object.keys(document)) {
    if (!(field in projection) || isInclusion(projection[field])) result[field] = document[field];
  }
  return result;
}

function isInclusion(spec) {
  return spec === 1 || spec === true;
}

/** The BSON size of documents as returned: what a read brought into the function. */
function sizeOf(documents) {
  return documents.reduce((total, document) => total + BSON.calculateObjectSize(document), 0);
}

class Cursor {
  constructor(collection, documents, projection) {
    this.collection = collection;
    this.documents = documents;
    this.projection = projection;
  }

  sort(order) {
    this.collection.sorts.push(order);
    const keys = Object.keys(order);
    this.documents.sort((a, b) => {
      for (const key of keys) {
        const c = compare(a[key], b[key]) * order[key];
        if (c !== 0) return c;
      }
      return 0;
    });
    return this;
  }

  limit(count) {
    this.documents = this.documents.slice(0, count);
    return this;
  }

  async toArray() {
    const result = this.documents.map((document) => clone(project(document, this.projection)));
    this.collection.reads.push({ documents: result.length, bytes: sizeOf(result) });
    return result;
  }
}

class Collection {
  /** `cluster` (shared by a runtime's collections): its clock, a Timestamp that every write
   * moves on, and its journal, every call in order as "db.coll method". */
  constructor(name, cluster = newCluster()) {
    this.name = name;
    this.cluster = cluster;
    this.documents = [];
    // Set to an Error to make every call fail (a database outage).
    this.failWith = null;
    // Calls by method name, and what each read returned ({ documents, bytes }).
    this.calls = {};
    this.reads = [];
    this.sorts = [];
  }

  check(method) {
    this.calls[method] = (this.calls[method] || 0) + 1;
    this.cluster.journal.push(`${this.name} ${method}`);
    if (this.failWith) throw this.failWith;
    if (WRITES.has(method)) this.cluster.clock.i += 1;
  }

  /**
   * The stages a function uses to learn the cluster time: $match, $limit and $project,
   * where a projected value may be the system variable "$$CLUSTER_TIME" (the cluster's
   * current time as the read runs).
   */
  aggregate(pipeline) {
    this.check("aggregate");
    let documents = this.documents.slice();
    for (const stage of pipeline) {
      const [name] = Object.keys(stage);
      const spec = stage[name];
      if (name === "$match") documents = documents.filter((document) => matches(document, spec));
      else if (name === "$limit") documents = documents.slice(0, spec);
      else if (name === "$project") {
        // Inclusion only (fields set to 1 or a variable; _id kept unless 0), as used.
        const now = clusterTime(this.cluster);
        documents = documents.map((document) => {
          const result = spec._id === 0 || spec._id === false ? {} : { _id: document._id };
          for (const [field, value] of Object.entries(spec)) {
            if (value === "$$CLUSTER_TIME") result[field] = now;
            else if (field !== "_id" && isInclusion(value)) result[field] = document[field];
          }
          return result;
        });
      } else throw new Error(`the collection double does not support the stage ${name}`);
    }
    const cursor = new Cursor(this, documents, undefined);
    return { toArray: () => cursor.toArray() };
  }

  async insertOne(document) {
    this.check("insertOne");
    const copy = clone(document);
    if (copy._id === undefined) copy._id = new BSON.ObjectId().toHexString();
    if (this.documents.some((existing) => same(existing._id, copy._id))) {
      throw new DuplicateKeyError(this.name, copy._id);
    }
    this.documents.push(copy);
    return { insertedId: copy._id };
  }

  /**
   * As the driver does: ordered (the default) stops at the first failing document;
   * {ordered: false} inserts every document it can, then throws for the ones it could not.
   */
  async insertMany(documents, options = {}) {
    this.check("insertMany");
    const ordered = options.ordered !== false;
    const writeErrors = [];
    const inserted = [];
    for (const [index, document] of documents.entries()) {
      const copy = clone(document);
      if (copy._id === undefined) copy._id = new BSON.ObjectId().toHexString();
      if (this.documents.some((existing) => same(existing._id, copy._id))) {
        writeErrors.push({ index, code: 11000, errmsg: duplicateMessage(this.name, copy._id) });
        if (ordered) break;
        continue;
      }
      this.documents.push(copy);
      inserted.push({ index, id: copy._id });
    }
    if (writeErrors.length > 0) throw new BulkWriteError(writeErrors, inserted);
    return { insertedIds: inserted.map(({ id }) => id) };
  }

  find(filter = {}, projection = undefined) {
    this.check("find");
    return new Cursor(this, this.documents.filter((document) => matches(document, filter)), projection);
  }

  async findOne(filter = {}, projection = undefined) {
    this.check("findOne");
    const document = this.documents.find((candidate) => matches(candidate, filter));
    const result = document === undefined ? null : clone(project(document, projection));
    this.reads.push({ documents: result ? 1 : 0, bytes: result ? sizeOf([result]) : 0 });
    return result;
  }

  /** Atlas's collection.count(query, {limit}): the number of matching documents. */
  async count(filter = {}, options = {}) {
    this.check("count");
    const count = this.documents.filter((document) => matches(document, filter)).length;
    return options.limit > 0 ? Math.min(count, options.limit) : count;
  }

  /** With {upsert: true} and no match, inserts the filter's equalities with the update applied. */
  async updateOne(filter, update, options = {}) {
    this.check("updateOne");
    let document = this.documents.find((candidate) => matches(candidate, filter));
    if (!document) {
      if (!options.upsert) return { matchedCount: 0, modifiedCount: 0 };
      document = {};
      for (const [field, condition] of Object.entries(filter)) {
        const operators =
          condition && typeof condition === "object" && !(condition instanceof Date) &&
          Object.keys(condition).some((key) => key.startsWith("$"));
        if (!operators) document[field] = clone(condition);
      }
      applyUpdate(document, update);
      if (document._id === undefined) document._id = new BSON.ObjectId().toHexString();
      this.documents.push(document);
      return { matchedCount: 0, modifiedCount: 0, upsertedId: document._id };
    }
    applyUpdate(document, update);
    return { matchedCount: 1, modifiedCount: 1 };
  }

  async deleteOne(filter) {
    this.check("deleteOne");
    const index = this.documents.findIndex((candidate) => matches(candidate, filter));
    if (index < 0) return { deletedCount: 0 };
    this.documents.splice(index, 1);
    return { deletedCount: 1 };
  }

  async deleteMany(filter) {
    this.check("deleteMany");
    const before = this.documents.length;
    this.documents = this.documents.filter((candidate) => !matches(candidate, filter));
    return { deletedCount: before - this.documents.length };
  }
}

const WRITES = new Set(["insertOne", "insertMany", "updateOne", "deleteOne", "deleteMany"]);

function newCluster() {
  return { clock: { t: 1700000000, i: 0 }, journal: [] };
}

function clusterTime(cluster) {
  return new BSON.Timestamp({ t: cluster.clock.t, i: cluster.clock.i });
}

function applyUpdate(document, update) {
  for (const operator of Object.keys(update)) {
    if (!operator.startsWith("$")) throw new Error("an update needs update operators ($set, ...)");
    const fields = update[operator];
    for (const field of Object.keys(fields)) {
      if (operator === "$set") document[field] = clone(fields[field]);
      else if (operator === "$unset") delete document[field];
      else if (operator === "$inc") document[field] = (document[field] || 0) + fields[field];
      else throw new Error(`the collection double does not support ${operator}`);
    }
  }
}

/** Atlas-style response headers: canonical names, each with a list of values. */
function atlasHeaders(headers) {
  const result = {};
  headers.forEach((value, name) => {
    const canonical = name.replace(/(^|-)([a-z])/g, (_, dash, letter) => dash + letter.toUpperCase());
    result[canonical] = [value];
  });
  return result;
}

/**
 * A runtime for the function files with the given values (`{ lakeIngestUrl: ..., ... }`).
 * `runtime.values` may be changed between calls (say, to point at another URL).
 */
function createRuntime(values = {}) {
  const collections = new Map();
  const cluster = newCluster();
  const requests = [];
  const logs = [];
  const loaded = new Map();

  const collection = (service, db, name) => {
    const key = `${service}/${db}.${name}`;
    if (!collections.has(key)) collections.set(key, new Collection(`${db}.${name}`, cluster));
    return collections.get(key);
  };

  const runtime = {
    values: Object.assign({}, values),
    requests,
    logs,
    collection,
    // The cluster's clock ({t, i}: set t to move time on) and the journal of calls.
    clock: cluster.clock,
    journal: cluster.journal,
    clusterTime: () => clusterTime(cluster),
    call: (name, ...args) => execute(name, args),
  };

  const context = {
    values: {
      get: (name) => runtime.values[name],
    },
    services: {
      get: (service) => ({
        db: (db) => ({
          collection: (name) => collection(service, db, name),
        }),
      }),
    },
    functions: {
      execute: (name, ...args) => execute(name, args),
    },
    http: {
      post: async (request) => {
        const headers = {};
        for (const [name, value] of Object.entries(request.headers || {})) {
          headers[name] = Array.isArray(value) ? value.join(", ") : String(value);
        }
        const body = request.encodeBodyAsJSON ? EJSON.stringify(request.body) : request.body;
        requests.push({ url: request.url, headers, body });
        const response = await fetch(request.url, {
          method: "POST",
          headers,
          body,
          redirect: request.followRedirects ? "follow" : "manual",
        });
        const bytes = Buffer.from(await response.arrayBuffer());
        return {
          status: `${response.status} ${response.statusText}`,
          statusCode: response.status,
          contentLength: bytes.length,
          headers: atlasHeaders(response.headers),
          cookies: {},
          body: { text: () => bytes.toString("utf8") },
        };
      },
    },
  };

  const utils = {
    crypto: {
      hmac: (input, secret, hash, format) =>
        crypto.createHmac(hash, secret).update(input, "utf8").digest(format),
    },
  };
  // Tests may replace a piece of the runtime to see how the functions cope with its faults.
  runtime.utils = utils;

  const functionConsole = {
    log: (...parts) => logs.push({ level: "log", text: parts.join(" ") }),
    error: (...parts) => logs.push({ level: "error", text: parts.join(" ") }),
    warn: (...parts) => logs.push({ level: "warn", text: parts.join(" ") }),
  };

  function load(name) {
    if (!loaded.has(name)) {
      const file = path.join(FUNCTIONS_DIR, `${name}.js`);
      const source = fs.readFileSync(file, "utf8");
      // The file assigns `exports`, as an Atlas function file does.
      const factory = new Function(
        "context",
        "EJSON",
        "BSON",
        "utils",
        "console",
        `let exports;\n${source}\n;return exports;\n//# sourceURL=${file}`
      );
      const exported = factory(context, EJSON, BSON, utils, functionConsole);
      if (typeof exported !== "function") throw new Error(`${file} does not assign a function to exports`);
      loaded.set(name, exported);
    }
    return loaded.get(name);
  }

  function execute(name, args) {
    return load(name)(...args);
  }

  return runtime;
}

module.exports = { createRuntime, Collection };
