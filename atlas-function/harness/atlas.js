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
//   count (Atlas's name: its MongoDB API has no countDocuments). Each collection counts its
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

function compare(a, b) {
  const x = a instanceof Date ? a.getTime() : a;
  const y = b instanceof Date ? b.getTime() : b;
  if (x === y) return 0;
  if (x === undefined || x === null) return -1;
  if (y === undefined || y === null) return 1;
  return x < y ? -1 : 1;
}

function same(a, b) {
  return compare(a, b) === 0;
}

function matches(document, filter) {
  return Object.keys(filter).every((field) => {
    const condition = filter[field];
    const value = document[field];
    if (condition && typeof condition === "object" && !(condition instanceof Date) && !Array.isArray(condition)) {
      return Object.keys(condition).every((operator) => {
        const operand = condition[operator];
        switch (operator) {
          case "$in":
            return operand.some((candidate) => same(value, candidate));
          case "$lte":
            return value !== undefined && compare(value, operand) <= 0;
          case "$lt":
            return value !== undefined && compare(value, operand) < 0;
          case "$gte":
            return value !== undefined && compare(value, operand) >= 0;
          case "$gt":
            return value !== undefined && compare(value, operand) > 0;
          default:
            throw new Error(`the collection double does not support ${operator}`);
        }
      });
    }
    return same(value, condition);
  });
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
    const result = this.documents.map((document) => structuredClone(project(document, this.projection)));
    this.collection.reads.push({ documents: result.length, bytes: sizeOf(result) });
    return result;
  }
}

class Collection {
  constructor(name) {
    this.name = name;
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
    if (this.failWith) throw this.failWith;
  }

  async insertOne(document) {
    this.check("insertOne");
    const copy = structuredClone(document);
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
      const copy = structuredClone(document);
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
    const result = document === undefined ? null : structuredClone(project(document, projection));
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
        if (!operators) document[field] = structuredClone(condition);
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

function applyUpdate(document, update) {
  for (const operator of Object.keys(update)) {
    if (!operator.startsWith("$")) throw new Error("an update needs update operators ($set, ...)");
    const fields = update[operator];
    for (const field of Object.keys(fields)) {
      if (operator === "$set") document[field] = structuredClone(fields[field]);
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
  const requests = [];
  const logs = [];
  const loaded = new Map();

  const collection = (service, db, name) => {
    const key = `${service}/${db}.${name}`;
    if (!collections.has(key)) collections.set(key, new Collection(`${db}.${name}`));
    return collections.get(key);
  };

  const runtime = {
    values: Object.assign({}, values),
    requests,
    logs,
    collection,
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
