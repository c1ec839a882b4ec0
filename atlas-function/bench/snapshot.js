// Benchmark of lakeSnapshot against the real handler: documents/s of snapshot runs within
// Atlas's limits (the production run budget and operation budget), for a few page and
// batch sizes, and the time a 1,000,000-document snapshot takes at that rate.
//
//   cargo build --release && node bench/snapshot.js            (from atlas-function/)
//   BENCH_DOCS=5000 BENCH_CONFIGS=1000x500 HANDLER_BIN=../target/debug/handler node bench/snapshot.js
//
// The handler runs as in production (durable writes, relaxed records, signing on) with a
// fresh local lake per configuration. The collection is the harness's in-memory double;
// the time its reads take is measured and reported apart (a real cluster reads a page by
// the _id index, in milliseconds). Prints a Markdown table for BENCHMARKS.md.

"use strict";

const path = require("node:path");
const { performance } = require("node:perf_hooks");
const { startHandler, runtimeFor, SECRET } = require("../harness");

const DOCS = Number(process.env.BENCH_DOCS || 20000);
// BENCH_CONFIGS="1000x500,5000x1000": page size x events per request.
const CONFIGS = (process.env.BENCH_CONFIGS || "1000x500,1000x100,500x50,5000x1000").split(",").map((text) => {
  const [page, batch] = text.split("x").map(Number);
  return { page, batch };
});
const RUN_BUDGET_MS = 240000;
const MAX_OPERATIONS = 800;
const SCHEDULE_SECONDS = 300;

/** About 1 KB, eight fields of six types, like the compaction and mirror benchmarks. */
function movie(n) {
  return {
    _id: n,
    title: `Movie number ${n}`,
    year: 1950 + (n % 70),
    rating: (n % 100) / 10 + 0.05,
    released: new Date(Date.UTC(2000, 0, 1) + n * 60000),
    watched: n % 2 === 0,
    cast: ["Actor A", "Actor B", "Actor C"].map((name) => `${name} ${n % 97}`),
    plot: "A long plot summary. ".repeat(40),
  };
}

async function measure({ page, batch }) {
  const handler = await startHandler({
    INGEST_HMAC_SECRET: SECRET,
    LOCAL_LAKE_FSYNC: "true",
  });
  try {
    const runtime = runtimeFor(handler.url, {
      options: {
        snapshotPageSize: page,
        snapshotBatchSize: batch,
        snapshotRunBudgetMs: RUN_BUDGET_MS,
        snapshotMaxOperationsPerRun: MAX_OPERATIONS,
        snapshotDeliveryBudgetMs: 60000,
        retryBudgetMs: 240000,
        attemptTimeoutMs: 100000,
      },
    });
    const items = runtime.collection("mongodb-atlas", "bench", "movies");
    items.documents = Array.from({ length: DOCS }, (_, n) => movie(n));
    let readMs = 0;
    const find = items.find.bind(items);
    items.find = (...args) => {
      const started = performance.now();
      const cursor = find(...args);
      const sort = cursor.sort.bind(cursor);
      cursor.sort = (order) => {
        sort(order);
        readMs += performance.now() - started;
        return cursor;
      };
      return cursor;
    };
    const started = performance.now();
    let runs = 0;
    let pagesFirstRun = 0;
    for (;;) {
      const report = await runtime.call("lakeSnapshot", "bench", "movies");
      runs += 1;
      const result = report.snapshots[0];
      if (runs === 1) pagesFirstRun = result.pages;
      if (result.finished) break;
      if (result.stoppedBy !== "operation budget" && result.stoppedBy !== "run budget") {
        throw new Error(`the run stopped: ${result.stoppedBy}`);
      }
    }
    const seconds = (performance.now() - started) / 1000;
    const files = handler.files().size;
    if (files !== DOCS) throw new Error(`${files} files for ${DOCS} documents`);
    const posts = runtime.requests.length;
    const perSecond = DOCS / seconds;
    const perSecondWithoutReads = DOCS / (seconds - readMs / 1000);
    // Within one run: the operation budget (a page costs a read, an update and 4 per post
    // with one attempt) and the time budget, whichever comes first.
    const operationsPerPage = 2 + 4 * Math.ceil(page / batch);
    const docsPerRunByOperations = Math.floor((MAX_OPERATIONS - 8) / operationsPerPage) * page;
    const docsPerRunByTime = Math.floor(perSecondWithoutReads * (RUN_BUDGET_MS / 1000 - 5));
    const docsPerRun = Math.min(docsPerRunByOperations, docsPerRunByTime);
    const runsForMillion = Math.ceil(1e6 / docsPerRun);
    const hoursForMillion = ((runsForMillion - 1) * SCHEDULE_SECONDS + Math.min(RUN_BUDGET_MS / 1000, docsPerRun / perSecondWithoutReads)) / 3600;
    return {
      page, batch, seconds, posts, runs, pagesFirstRun, perSecond, perSecondWithoutReads, readMs,
      docsPerRun, limit: docsPerRunByOperations <= docsPerRunByTime ? "operations" : "time",
      runsForMillion, hoursForMillion,
    };
  } finally {
    await handler.stop();
  }
}

async function main() {
  console.log(`lakeSnapshot benchmark: ${DOCS} documents of ~1 KB, handler ${process.env.HANDLER_BIN || path.resolve(__dirname, "../../target/debug/handler")}`);
  console.log("| page | batch/POST | POSTs | seconds | docs/s | docs/s without the double's reads | docs per run (limit) | runs for 1,000,000 | hours for 1,000,000 |");
  console.log("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  for (const config of CONFIGS) {
    const r = await measure(config);
    console.log(
      `| ${r.page} | ${r.batch} | ${r.posts} | ${r.seconds.toFixed(1)} | ${Math.round(r.perSecond)} | ${Math.round(r.perSecondWithoutReads)} | ${r.docsPerRun} (${r.limit}) | ${r.runsForMillion} | ${r.hoursForMillion.toFixed(2)} |`
    );
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
