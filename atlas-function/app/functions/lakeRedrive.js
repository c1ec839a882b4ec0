// lakeRedrive: the scheduled trigger's function. Each run, within redriveRunBudgetMs:
//
// 1. re-sends dead letters that are due, oldest first, at most redriveMaxPerRun, and
//    removes each one only after a 2xx. One that fails again stays, with its attempts,
//    error and a later nextAttemptAt; a failure that says the endpoint is unreachable or
//    unwell (network, 408, 429, 5xx) ends this part of the run, since the rest would fail
//    the same way;
// 2. posts the buffer (batching mode) as JSON arrays of up to batchSize events, oldest
//    first, and removes them only after a 2xx. A batch the handler refuses for good (4xx)
//    is split into dead letters, so one bad event cannot hold up the rest; a batch that
//    fails otherwise stays in the buffer for the next run.
//
// Within Atlas's limits on a function run (memory, async operations): bodies are loaded
// only as they are sent (one dead letter at a time; a batch only up to batchMaxBytes,
// sized from the `bytes` stored with each buffered event before any body is read), and a
// refused batch costs one insertMany and one deleteMany, not an insert per event.
//
// The circuit breaker (lakeBreaker) follows what the endpoint answered: an answer (a 2xx,
// or a refusal for good) closes it, a run stopped by an unreachable or unwell endpoint
// opens it again for breakerOpenMs.
//
// Every run, even one that fails, logs one line `lake-backlog {...}`: what still waits
// (lakeBacklog) and what the run sent, for an alert (docs/operations.md, "Atlas side").
//
// Returns counts only (never bodies). Overlapping runs only cause duplicate deliveries,
// which the handler absorbs (one file per event).

exports = async function lakeRedrive() {
  const options = await context.functions.execute("lakeConfig");
  options.problems.forEach(function (problem) {
    console.error("lakeOptions: " + problem);
  });
  const deadline = Date.now() + options.redriveRunBudgetMs;
  const db = context.services.get(options.dataSource).db(options.database);
  const report = {
    deadLetters: { sent: 0, failed: 0, stoppedBy: null },
    buffer: { batches: 0, events: 0, deadLettered: 0, stoppedBy: null },
    // "closed" or "opened" when this run changed the breaker.
    breaker: null,
  };
  const breaker = { changed: null, closeSent: false };
  try {
    await redriveDeadLetters(db.collection(options.deadLetterCollection), options, deadline, report.deadLetters, breaker);
    await flushBuffer(db.collection(options.bufferCollection), options, deadline, report.buffer, breaker);
    report.breaker = breaker.changed;
    console.log("lakeRedrive: " + JSON.stringify(report));
  } finally {
    // Also when the run failed: an alert on this line must not go quiet when things break.
    console.log(await backlogLine(report));
  }
  return report;
};

// The run's one `lake-backlog {...}` line, for log alerts (docs/operations.md, "Atlas
// side"): what still waits after the run (lakeBacklog) and what the run sent and failed
// to send. Always the same keys in the same order; numbers and states only.
async function backlogLine(report) {
  let backlog;
  try {
    backlog = await context.functions.execute("lakeBacklog");
  } catch (error) {
    backlog = { error: "lake backlog failed: " + (error && error.message ? error.message : String(error)) };
  }
  const line = {
    deadLetters: nullIfMissing(backlog.deadLetters),
    oldestDeadLetterSeconds: nullIfMissing(backlog.oldestDeadLetterSeconds),
    buffered: nullIfMissing(backlog.buffered),
    oldestBufferedSeconds: nullIfMissing(backlog.oldestBufferedSeconds),
    breaker: nullIfMissing(backlog.breaker),
    // Delivered: dead letters sent and buffered events posted. Failed: dead letters that
    // failed again and buffered events refused for good (now dead letters).
    redriven: report.deadLetters.sent + report.buffer.events,
    failed: report.deadLetters.failed + report.buffer.deadLettered,
    error: nullIfMissing(backlog.error),
  };
  return "lake-backlog " + JSON.stringify(line);
}

function nullIfMissing(value) {
  return value === undefined ? null : value;
}

async function redriveDeadLetters(collection, options, deadline, report, breaker) {
  // The due letters without their bodies (up to 16 MB each): each body is loaded when it
  // is sent, so a run holds one event at a time.
  const due = await collection
    .find({ nextAttemptAt: { $lte: new Date() } }, { _id: 1, redriveFailures: 1 })
    .sort({ deadLetteredAt: 1, _id: 1 })
    .limit(options.redriveMaxPerRun)
    .toArray();
  for (const entry of due) {
    const budget = Math.min(options.redriveDeliveryBudgetMs, deadline - Date.now());
    if (budget <= 0) {
      report.stoppedBy = "run budget";
      return;
    }
    const letter = await collection.findOne({ _id: entry._id }, { body: 1, event: 1, redriveFailures: 1 });
    if (!letter) {
      // Sent meanwhile by an overlapping run.
      continue;
    }
    // A letter kept as the event object (it could not be serialised when it came) is
    // serialised now; if that still fails, lakeDeliver reports it as permanent.
    const body =
      typeof letter.body === "string" ? letter.body : serialise(letter.event);
    let outcome;
    try {
      outcome = await context.functions.execute("lakeDeliver", body, {
        retryBudgetMs: budget,
      });
    } catch (error) {
      outcome = { ok: false, permanent: false, attempts: 0, status: null,
        error: "delivery failed unexpectedly: " + (error && error.message ? error.message : String(error)) };
    }
    await settleBreaker(options, breaker, outcome);
    if (outcome.ok) {
      await collection.deleteOne({ _id: letter._id });
      report.sent += 1;
      continue;
    }
    report.failed += 1;
    const failures = (letter.redriveFailures || 0) + 1;
    const wait = Math.min(
      options.redriveBackoffMaxMs,
      options.redriveBackoffBaseMs * Math.pow(2, failures - 1)
    );
    await collection.updateOne(
      { _id: letter._id },
      {
        $set: {
          error: outcome.error,
          status: outcome.status,
          permanent: outcome.permanent,
          response: outcome.response,
          lastAttemptAt: new Date(),
          nextAttemptAt: new Date(Date.now() + wait),
          redriveFailures: failures,
        },
        $inc: { attempts: outcome.attempts },
      }
    );
    if (!outcome.permanent) {
      report.stoppedBy = outcome.error;
      return;
    }
  }
}

async function flushBuffer(collection, options, deadline, report, breaker) {
  while (report.batches < options.redriveMaxBatchesPerRun) {
    const budget = Math.min(options.redriveDeliveryBudgetMs, deadline - Date.now());
    if (budget <= 0) {
      report.stoppedBy = "run budget";
      return;
    }
    const batch = await nextBatch(collection, options);
    if (batch.length === 0) {
      return;
    }
    // The stored texts joined as they are: the array holds the events' exact bytes.
    const body = "[" + batch.map(function (entry) {
      return entry.body;
    }).join(",") + "]";
    const outcome = await context.functions.execute("lakeDeliver", body, { retryBudgetMs: budget });
    report.batches += 1;
    await settleBreaker(options, breaker, outcome);
    if (!outcome.ok && !outcome.permanent) {
      report.stoppedBy = outcome.error;
      return;
    }
    if (!outcome.ok) {
      // One call, one insertMany for the whole batch. If it throws, the run ends here and
      // the batch stays in the buffer: nothing is removed before it is kept elsewhere.
      await context.functions.execute("lakeDeadLetter", batch.map(function (entry) {
        return {
          eventId: entry._id,
          body: entry.body,
          about: entry.about,
          outcome: outcome,
          source: "batch",
        };
      }));
      report.deadLettered += batch.length;
    } else {
      report.events += batch.length;
    }
    await collection.deleteMany({
      _id: {
        $in: batch.map(function (entry) {
          return entry._id;
        }),
      },
    });
  }
}

// The next batch, oldest first, in two reads so that at most about batchMaxBytes of bodies
// are ever loaded: the sizes of the oldest batchSize entries (`bytes`, stored by
// forwardChange), then the bodies of those that fit.
async function nextBatch(collection, options) {
  const oldest = await collection
    .find({}, { _id: 1, bytes: 1 })
    .sort({ bufferedAt: 1, _id: 1 })
    .limit(options.batchSize)
    .toArray();
  if (oldest.length === 0) {
    return [];
  }
  const chosen = withinBytes(oldest, options.batchMaxBytes);
  const loaded = await collection
    .find({
      _id: {
        $in: chosen.map(function (entry) {
          return entry._id;
        }),
      },
    })
    .toArray();
  // $in answers in no particular order; the batch keeps the buffer's. An entry gone
  // meanwhile (an overlapping run sent it) is left out; if all are, this run's flush ends
  // (the next run goes on).
  const byId = {};
  loaded.forEach(function (entry) {
    byId[String(entry._id)] = entry;
  });
  return chosen
    .map(function (entry) {
      return byId[String(entry._id)];
    })
    .filter(function (entry) {
      return entry !== undefined;
    });
}

// The oldest entries whose bodies fit in maxBytes of UTF-8 as a JSON array (always at
// least one). An entry without a stored size (buffered by an earlier version) may be as
// large as a document can be, so it goes alone.
function withinBytes(entries, maxBytes) {
  const batch = [];
  let bytes = 2;
  for (const entry of entries) {
    const size = typeof entry.bytes === "number" && entry.bytes >= 0 ? entry.bytes : Infinity;
    bytes += size + 1;
    if (batch.length > 0 && bytes > maxBytes) {
      break;
    }
    batch.push(entry);
    if (size === Infinity) {
      break;
    }
  }
  return batch;
}

// The breaker follows the endpoint's answers: a 2xx or a refusal for good (the endpoint is
// up) closes it, once per run; retries spent on an unreachable or unwell endpoint (which
// end the run) open it again. A failure before any request says nothing about the
// endpoint. Errors are logged: the run's deliveries do not depend on the breaker.
async function settleBreaker(options, breaker, outcome) {
  if (!(options.breakerOpenMs > 0) || !(outcome.attempts > 0)) {
    return;
  }
  const unwell = !outcome.ok && !outcome.permanent;
  if (!unwell && breaker.closeSent) {
    return;
  }
  breaker.closeSent = !unwell;
  let result;
  try {
    result = unwell
      ? await context.functions.execute("lakeBreaker", "open", outcome.error)
      : await context.functions.execute("lakeBreaker", "close");
  } catch (error) {
    result = { ok: false, error: "lake breaker update failed: " + (error && error.message ? error.message : String(error)) };
  }
  if (result && result.error) {
    console.error(result.error);
  } else if (unwell) {
    breaker.changed = "opened";
  } else if (result && result.closed) {
    breaker.changed = "closed";
  }
}

function serialise(event) {
  try {
    return event === undefined || event === null ? null : EJSON.stringify(event, { relaxed: false });
  } catch (error) {
    return null;
  }
}
