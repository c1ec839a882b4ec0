// Everything a test needs: the Atlas runtime double, the real handler, events, and the
// settings the tests share.

"use strict";

const { createRuntime, Collection } = require("./atlas");
const { startHandler, startProxy, deadUrl, corpusDir, handlerBinary } = require("./handler");
const { insertEvent, insertEventText, sampleEvent } = require("./events");

/** The secret the handler checks and the function signs with. */
const SECRET = "atlas-function-test-secret-0123456789";
const FUNCTION_KEY = "test-function-key";

/** Delays shrunk so retries take milliseconds; the logic is the production one. */
const FAST = {
  retryBaseMs: 5,
  retryMaxDelayMs: 40,
  retryBudgetMs: 5000,
  attemptTimeoutMs: 3000,
  redriveDeliveryBudgetMs: 2000,
  redriveRunBudgetMs: 20000,
};

/** A runtime whose values point at `url`, signing with SECRET unless told otherwise. */
function runtimeFor(url, { values = {}, options = {} } = {}) {
  return createRuntime(
    Object.assign(
      {
        lakeIngestUrl: url,
        lakeFunctionKey: FUNCTION_KEY,
        lakeSigningSecret: SECRET,
        lakeOptions: Object.assign({}, FAST, options),
      },
      values
    )
  );
}

/** The dead-letter, buffer and state collections at their default place. */
function deadLetters(runtime) {
  return runtime.collection("mongodb-atlas", "lake_delivery", "dead_letters");
}

function buffer(runtime) {
  return runtime.collection("mongodb-atlas", "lake_delivery", "buffer");
}

function state(runtime) {
  return runtime.collection("mongodb-atlas", "lake_delivery", "state");
}

module.exports = {
  createRuntime,
  Collection,
  startHandler,
  startProxy,
  deadUrl,
  corpusDir,
  handlerBinary,
  insertEvent,
  insertEventText,
  sampleEvent,
  SECRET,
  FUNCTION_KEY,
  FAST,
  runtimeFor,
  deadLetters,
  buffer,
  state,
};
