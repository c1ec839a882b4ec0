// lakeConfig: the delivery options, from the `lakeOptions` value laid over the defaults
// below (and, for one call, over `overrides`).
//
// A bad entry falls back to its default and is listed in `problems`, instead of throwing:
// a function that cannot read its options could not dead-letter the event it holds.
// Secrets (the function key, the signing secret) are not options: lakeDeliver reads them
// itself, so they are never passed between functions or returned.

const DEFAULTS = {
  // Where the dead-letter, buffer and state collections live.
  dataSource: "mongodb-atlas",
  database: "lake_delivery",
  deadLetterCollection: "dead_letters",
  bufferCollection: "buffer",
  stateCollection: "state",
  // Batching: the trigger only buffers events; the scheduled lakeRedrive posts them as
  // JSON arrays of up to batchSize events (and at most batchMaxBytes).
  batching: false,
  batchSize: 100,
  batchMaxBytes: 16 * 1024 * 1024,
  // One delivery from the trigger: retries end within retryBudgetMs, which leaves room in
  // the 300 s Atlas function limit to dead-letter the event afterwards.
  retryBudgetMs: 240000,
  // context.http has no timeout of its own; an attempt without an answer is abandoned
  // (and retried) after this long: below the handler's storage deadline (120 s by
  // default), on purpose (docs/decisions.md, "Budgets").
  attemptTimeoutMs: 100000,
  retryBaseMs: 1000,
  retryMaxDelayMs: 30000,
  // The circuit breaker (lakeBreaker): once a delivery has spent its retries on an endpoint
  // that is unreachable or unwell, the trigger dead-letters events at once for this long
  // instead of spending the retry budget on each, so an outage cannot back the trigger up.
  // 0 turns the breaker off.
  breakerOpenMs: 60000,
  // One run of the scheduled lakeRedrive, and each delivery inside it.
  redriveRunBudgetMs: 240000,
  redriveDeliveryBudgetMs: 30000,
  redriveMaxPerRun: 100,
  redriveMaxBatchesPerRun: 20,
  // A dead letter that fails again waits before its next try, doubling up to the maximum,
  // so a few events the handler always refuses cannot starve the others.
  redriveBackoffBaseMs: 300000,
  redriveBackoffMaxMs: 3600000,
  // The initial snapshot (lakeSnapshot): documents read per page, events per request (and
  // at most batchMaxBytes), one run's time (below Atlas's 300 s) and async operations
  // (below Atlas's 1,000), and the retry budget of each request within the run.
  snapshotPageSize: 1000,
  snapshotBatchSize: 500,
  snapshotRunBudgetMs: 240000,
  snapshotMaxOperationsPerRun: 800,
  snapshotDeliveryBudgetMs: 60000,
};

const NAMES = ["dataSource", "database", "deadLetterCollection", "bufferCollection", "stateCollection"];
const COUNTS = [
  "batchSize",
  "batchMaxBytes",
  "redriveMaxPerRun",
  "redriveMaxBatchesPerRun",
  "snapshotPageSize",
  "snapshotBatchSize",
  "snapshotMaxOperationsPerRun",
];

exports = function lakeConfig(overrides) {
  const configured = context.values.get("lakeOptions");
  const given = Object.assign(
    {},
    configured && typeof configured === "object" ? configured : {},
    overrides && typeof overrides === "object" ? overrides : {}
  );
  const options = Object.assign({}, DEFAULTS);
  const problems = [];
  Object.keys(given).forEach(function (name) {
    const value = given[name];
    if (!(name in DEFAULTS)) {
      problems.push("lakeOptions." + name + " is not an option (ignored)");
    } else if (!valid(name, value)) {
      problems.push(
        "lakeOptions." + name + " = " + JSON.stringify(value) + " is invalid; using " +
          JSON.stringify(DEFAULTS[name])
      );
    } else {
      options[name] = value;
    }
  });
  options.problems = problems;
  return options;
};

function valid(name, value) {
  if (NAMES.indexOf(name) >= 0) {
    return typeof value === "string" && value.length > 0;
  }
  if (name === "batching") {
    return typeof value === "boolean";
  }
  if (typeof value !== "number" || !isFinite(value) || value < 0) {
    return false;
  }
  return COUNTS.indexOf(name) < 0 || (value >= 1 && Math.floor(value) === value);
}
