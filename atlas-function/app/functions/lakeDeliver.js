// lakeDeliver: POSTs one request body (a canonical Extended JSON change event, or a JSON
// array of them) to the lake endpoint, signed, and retries it until it is acknowledged,
// refused for good, or the time budget is spent.
//
//   await context.functions.execute("lakeDeliver", body, { retryBudgetMs: 30000 })
//   -> { ok, status, attempts, elapsedMs, permanent, error, response }
//
// It never throws for a failed delivery: the caller decides where the body is kept
// (dead-letter collection, buffer). Retried: network errors, no answer within
// attemptTimeoutMs, 408, 429 and 5xx, with exponential backoff and jitter, never sooner
// than the answer's Retry-After. Permanent: any other status outside 2xx (a 401 means the
// signing secrets differ; a 400 names the event the handler refuses).
//
// Values read here: lakeIngestUrl (required), lakeFunctionKey (sent as x-functions-key),
// lakeSigningSecret and, while rotating, lakeSigningSecretNext (each adds a v1 signature).

exports = async function lakeDeliver(body, overrides) {
  try {
    return await deliver(body, overrides);
  } catch (error) {
    // Never throw: the caller keeps the event whatever failed here (values, crypto,
    // timers), and a throw would skip that.
    return failure(false, null, "delivery failed unexpectedly: " + describe(error).replace(/^network: /, ""), 0, Date.now(), null);
  }
};

async function deliver(body, overrides) {
  const options = await context.functions.execute("lakeConfig", overrides);
  const started = Date.now();
  const url = context.values.get("lakeIngestUrl");
  if (typeof url !== "string" || url.length === 0) {
    return failure(true, null, "the value lakeIngestUrl is not set", 0, started, null);
  }
  if (typeof body !== "string") {
    return failure(true, null, "lakeDeliver needs the request body as a string", 0, started, null);
  }
  const functionKey = context.values.get("lakeFunctionKey");
  const secrets = [
    context.values.get("lakeSigningSecret"),
    context.values.get("lakeSigningSecretNext"),
  ].filter(function (secret) {
    return typeof secret === "string" && secret.length > 0;
  });

  const deadline = started + options.retryBudgetMs;
  // An attempt with less time than this left is not worth starting: it could only time out.
  const shortestAttemptMs = Math.min(options.attemptTimeoutMs, 50);
  let attempts = 0;
  let answered = null; // the last answer the endpoint gave, the best reason to report
  for (;;) {
    attempts += 1;
    const headers = { "Content-Type": ["application/json"] };
    if (typeof functionKey === "string" && functionKey.length > 0) {
      headers["x-functions-key"] = [functionKey];
    }
    if (secrets.length > 0) {
      // Signed per attempt: a retry minutes later still carries a fresh timestamp.
      headers["X-Ingest-Signature"] = [signature(body, secrets)];
    }
    const timeoutMs = Math.max(1, Math.min(options.attemptTimeoutMs, deadline - Date.now()));
    let answer;
    try {
      const response = await withTimeout(
        context.http.post({ url: url, headers: headers, body: body, encodeBodyAsJSON: false }),
        timeoutMs
      );
      answer = classify(response);
    } catch (error) {
      answer = { kind: "retry", status: null, error: describe(error), retryAfterMs: 0, response: null };
    }
    // A last attempt cut short by the budget says less than the endpoint's own last answer.
    const cutShort = answer.status === null && timeoutMs < options.attemptTimeoutMs;
    const reason = cutShort && answered !== null ? answered : answer;
    if (answer.status !== null) {
      answered = answer;
    }
    if (answer.kind === "ok") {
      return {
        ok: true,
        status: answer.status,
        attempts: attempts,
        elapsedMs: Date.now() - started,
        permanent: false,
        error: null,
        response: null,
      };
    }
    if (answer.kind === "permanent") {
      return failure(true, answer.status, answer.error, attempts, started, answer.response);
    }
    const delay = Math.max(backoff(attempts, options), answer.retryAfterMs);
    if (Date.now() + delay + shortestAttemptMs > deadline) {
      const error = reason.error + " (gave up after " + attempts + " attempts in " +
        Math.round((Date.now() - started) / 1000) + " s)";
      return failure(false, reason.status, error, attempts, started, reason.response);
    }
    await sleep(delay);
  }
}

function failure(permanent, status, error, attempts, started, response) {
  return {
    ok: false,
    status: status,
    attempts: attempts,
    elapsedMs: Date.now() - started,
    permanent: permanent,
    error: error,
    response: response,
  };
}

// `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, one v1 per secret.
function signature(body, secrets) {
  const t = String(Math.floor(Date.now() / 1000));
  const signed = t + "." + body;
  return "t=" + t + secrets.map(function (secret) {
    return ",v1=" + utils.crypto.hmac(signed, secret, "sha256", "hex");
  }).join("");
}

function classify(response) {
  const status = response.statusCode;
  if (status >= 200 && status < 300) {
    return { kind: "ok", status: status };
  }
  const text = bodyText(response);
  const error = "HTTP " + status + errorCode(text);
  const retry = status === 408 || status === 429 || (status >= 500 && status < 600);
  return {
    kind: retry ? "retry" : "permanent",
    status: status,
    error: error,
    retryAfterMs: retry ? retryAfterMs(response.headers) : 0,
    // Kept with a dead letter for operators; may quote the event, so never logged.
    response: text.slice(0, 1000),
  };
}

function bodyText(response) {
  try {
    return response.body ? response.body.text() : "";
  } catch (error) {
    return "";
  }
}

// The handler's stable error code (`{"error": "invalid_signature", ...}`), if any.
function errorCode(text) {
  try {
    const parsed = JSON.parse(text);
    return parsed && typeof parsed.error === "string" ? " " + parsed.error : "";
  } catch (error) {
    return "";
  }
}

// Retry-After in seconds or as an HTTP date; header names compared case-insensitively.
function retryAfterMs(headers) {
  const name = Object.keys(headers || {}).filter(function (key) {
    return key.toLowerCase() === "retry-after";
  })[0];
  if (!name) {
    return 0;
  }
  const raw = headers[name];
  const value = String(Array.isArray(raw) ? raw[0] : raw).trim();
  if (/^\d+$/.test(value)) {
    return parseInt(value, 10) * 1000;
  }
  const when = Date.parse(value);
  return isNaN(when) ? 0 : Math.max(0, when - Date.now());
}

// Exponential, capped, with jitter: half fixed, half random, so retries of many events
// spread out but never collapse to zero.
function backoff(attempt, options) {
  const cap = Math.min(options.retryMaxDelayMs, options.retryBaseMs * Math.pow(2, attempt - 1));
  return cap / 2 + Math.random() * (cap / 2);
}

function withTimeout(promise, ms) {
  return new Promise(function (resolve, reject) {
    const timer = setTimeout(function () {
      reject(new Error("no answer within " + ms + " ms"));
    }, ms);
    promise.then(
      function (value) {
        clearTimeout(timer);
        resolve(value);
      },
      function (error) {
        clearTimeout(timer);
        reject(error);
      }
    );
  });
}

function sleep(ms) {
  return new Promise(function (resolve) {
    setTimeout(resolve, ms);
  });
}

// Network errors can quote the URL, whose query may hold the function key (?code=...):
// queries are cut out before the text is kept or logged.
function describe(error) {
  const message = error && error.message ? error.message : String(error);
  const cause = error && error.cause && (error.cause.code || error.cause.message);
  const text = "network: " + message + (cause ? " (" + cause + ")" : "");
  return text.replace(/\?[^\s"')]*/g, "?…").slice(0, 300);
}
