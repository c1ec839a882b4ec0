// The real Rust handler for the tests: the built binary started as the Functions host
// starts it (FUNCTIONS_CUSTOMHANDLER_PORT=0, JSON logs, a temporary local lake), plus a
// small HTTP proxy that can misbehave in front of it, and readers for the lake.

"use strict";

const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const http = require("node:http");
const net = require("node:net");
const readline = require("node:readline");
const { spawn } = require("node:child_process");

const REPO = path.resolve(__dirname, "../..");

/** The handler binary: HANDLER_BIN (set by `cargo test`), else the debug build. */
function handlerBinary() {
  const candidate = process.env.HANDLER_BIN || path.join(REPO, "target/debug/handler");
  if (!fs.existsSync(candidate)) {
    throw new Error(
      `the handler binary is missing at ${candidate}: run \`cargo build\` or ` +
        "`cargo test --test atlas_function` (which sets HANDLER_BIN)"
    );
  }
  return candidate;
}

/** The BSON corpus: BSON_CORPUS_DIR, else ../shared/bson-corpus. These tests never skip. */
function corpusDir() {
  const dir = process.env.BSON_CORPUS_DIR || path.resolve(REPO, "../shared/bson-corpus");
  if (!fs.existsSync(path.join(dir, "double.json"))) {
    throw new Error(`the BSON corpus is missing at ${dir} (set BSON_CORPUS_DIR)`);
  }
  return dir;
}

/**
 * Starts the handler with a fresh lake and `settings` as its only environment (besides
 * the port, log format and lake). Resolves once it logs `ready`.
 */
async function startHandler(settings = {}) {
  const lake = fs.mkdtempSync(path.join(os.tmpdir(), "atlas-function-lake-"));
  const env = Object.assign(
    {
      FUNCTIONS_CUSTOMHANDLER_PORT: "0",
      LOG_FORMAT: "json",
      LOCAL_LAKE_DIR: lake,
      // Throwaway lake: skip the flushes to disk.
      LOCAL_LAKE_FSYNC: "false",
    },
    settings
  );
  const child = spawn(handlerBinary(), [], { env, stdio: ["ignore", "pipe", "pipe"] });
  const log = [];
  let stderr = "";
  child.stderr.on("data", (chunk) => {
    stderr += chunk;
  });
  const address = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ready line within 10 s: ${stderr}`)), 10000);
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the handler exited with ${code} before it was ready: ${stderr}`));
    });
    readline.createInterface({ input: child.stdout }).on("line", (line) => {
      log.push(line);
      let entry;
      try {
        entry = JSON.parse(line);
      } catch {
        return;
      }
      if (entry.message === "ready") {
        clearTimeout(timer);
        resolve(entry.address);
      }
    });
  });
  child.removeAllListeners("exit");
  const url = `http://${address}/api/ingest`;
  return {
    url,
    lake,
    log,
    /** Every record file in the lake (temporary files excluded), as text by relative path. */
    files: () => readLake(lake),
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve(child.exitCode);
        child.on("exit", (code) => {
          fs.rmSync(lake, { recursive: true, force: true });
          resolve(code);
        });
        child.kill("SIGTERM");
      }),
  };
}

/** The lake's change files: not the sink's `.tmp`, nor compaction's hidden `_compact`
 * state (the late markers these tests' long-closed hours leave). */
function readLake(lake) {
  const files = new Map();
  const walk = (dir) => {
    if (!fs.existsSync(dir)) return;
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== ".tmp" && entry.name !== "_compact") walk(full);
      } else {
        files.set(path.relative(lake, full), fs.readFileSync(full, "utf8"));
      }
    }
  };
  walk(lake);
  return files;
}

/**
 * An HTTP proxy in front of `target`. For each request, `decide(n, request)` (n counts
 * from 1) returns "forward", "hang" (never answer), or `{ status, headers, body }` (with
 * `delayMs`, answered that much later: a slow endpoint).
 * Records every request it saw with its body.
 */
async function startProxy(target, decide) {
  const seen = [];
  const sockets = new Set();
  const server = http.createServer(async (request, response) => {
    const chunks = [];
    for await (const chunk of request) chunks.push(chunk);
    const body = Buffer.concat(chunks);
    seen.push({ headers: request.headers, body: body.toString("utf8") });
    const decision = decide(seen.length, request);
    if (decision === "hang") return;
    if (decision.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, decision.delayMs));
    if (decision !== "forward") {
      response.writeHead(decision.status, decision.headers || { "Content-Type": "application/json" });
      response.end(decision.body || "{}");
      return;
    }
    const headers = Object.assign({}, request.headers);
    delete headers.host;
    const forwarded = await fetch(target, { method: "POST", headers, body });
    const answer = Buffer.from(await forwarded.arrayBuffer());
    response.writeHead(forwarded.status, Object.fromEntries(forwarded.headers));
    response.end(answer);
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/api/ingest`,
    seen,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * A URL whose server is down: every connection is reset at once, a network error for the
 * caller. (A closed port could be taken by another test's server meanwhile; this cannot.)
 * It does not keep the process alive.
 */
async function deadUrl() {
  const server = net.createServer((socket) => socket.resetAndDestroy());
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  server.unref();
  return `http://127.0.0.1:${server.address().port}/api/ingest`;
}

module.exports = { startHandler, startProxy, deadUrl, corpusDir, handlerBinary };
