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
//   calls the functions use: insertOne (duplicate _id -> E11000), find(filter).sort().limit()
//   .toArray(), updateOne ($set, $inc), deleteOne, deleteMany, countDocuments;
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
    super(`E11000 duplicate key error collection: ${collection} index: _id_ dup key: { _id: ${JSON.stringify(id)} }`);
    this.code = 11000;
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

class Cursor {
  constructor(documents) {
    this.documents = documents;
  }

  sort(order) {
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
    return this.documents.map((document) => structuredClone(document));
  }
}

class Collection {
  constructor(name) {
    this.name = name;
    this.documents = [];
    // Set to an Error to make every call fail (a database outage).
    this.failWith = null;
  }

  check() {
    if (this.failWith) throw this.failWith;
  }

  async insertOne(document) {
    this.check();
    const copy = structuredClone(document);
    if (copy._id === undefined) copy._id = new BSON.ObjectId().toHexString();
    if (this.documents.some((existing) => same(existing._id, copy._id))) {
      throw new DuplicateKeyError(this.name, copy._id);
    }
    this.documents.push(copy);
    return { insertedId: copy._id };
  }

  find(filter = {}) {
    this.check();
    return new Cursor(this.documents.filter((document) => matches(document, filter)));
  }

  async countDocuments(filter = {}) {
    this.check();
    return this.documents.filter((document) => matches(document, filter)).length;
  }

  async updateOne(filter, update) {
    this.check();
    const document = this.documents.find((candidate) => matches(candidate, filter));
    if (!document) return { matchedCount: 0, modifiedCount: 0 };
    for (const operator of Object.keys(update)) {
      const fields = update[operator];
      for (const field of Object.keys(fields)) {
        if (operator === "$set") document[field] = structuredClone(fields[field]);
        else if (operator === "$inc") document[field] = (document[field] || 0) + fields[field];
        else throw new Error(`the collection double does not support ${operator}`);
      }
    }
    return { matchedCount: 1, modifiedCount: 1 };
  }

  async deleteOne(filter) {
    this.check();
    const index = this.documents.findIndex((candidate) => matches(candidate, filter));
    if (index < 0) return { deletedCount: 0 };
    this.documents.splice(index, 1);
    return { deletedCount: 1 };
  }

  async deleteMany(filter) {
    this.check();
    const before = this.documents.length;
    this.documents = this.documents.filter((candidate) => !matches(candidate, filter));
    return { deletedCount: before - this.documents.length };
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
