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
  };
  await redriveDeadLetters(db.collection(options.deadLetterCollection), options, deadline, report.deadLetters);
  await flushBuffer(db.collection(options.bufferCollection), options, deadline, report.buffer);
  console.log("lakeRedrive: " + JSON.stringify(report));
  return report;
};

async function redriveDeadLetters(collection, options, deadline, report) {
  const due = await collection
    .find({ nextAttemptAt: { $lte: new Date() } })
    .sort({ deadLetteredAt: 1, _id: 1 })
    .limit(options.redriveMaxPerRun)
    .toArray();
  for (const letter of due) {
    const budget = Math.min(options.redriveDeliveryBudgetMs, deadline - Date.now());
    if (budget <= 0) {
      report.stoppedBy = "run budget";
      return;
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

async function flushBuffer(collection, options, deadline, report) {
  while (report.batches < options.redriveMaxBatchesPerRun) {
    const budget = Math.min(options.redriveDeliveryBudgetMs, deadline - Date.now());
    if (budget <= 0) {
      report.stoppedBy = "run budget";
      return;
    }
    const oldest = await collection
      .find({})
      .sort({ bufferedAt: 1, _id: 1 })
      .limit(options.batchSize)
      .toArray();
    if (oldest.length === 0) {
      return;
    }
    const batch = withinBytes(oldest, options.batchMaxBytes);
    // The stored texts joined as they are: the array holds the events' exact bytes.
    const body = "[" + batch.map(function (entry) {
      return entry.body;
    }).join(",") + "]";
    const outcome = await context.functions.execute("lakeDeliver", body, { retryBudgetMs: budget });
    report.batches += 1;
    if (!outcome.ok && !outcome.permanent) {
      report.stoppedBy = outcome.error;
      return;
    }
    if (!outcome.ok) {
      for (const entry of batch) {
        await context.functions.execute("lakeDeadLetter", {
          eventId: entry._id,
          body: entry.body,
          about: entry.about,
          outcome: outcome,
          source: "batch",
        });
      }
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

// The oldest entries whose bodies fit in maxBytes of UTF-8 (always at least one).
function withinBytes(entries, maxBytes) {
  const batch = [];
  let bytes = 2;
  for (const entry of entries) {
    bytes += utf8Length(entry.body) + 1;
    if (batch.length > 0 && bytes > maxBytes) {
      break;
    }
    batch.push(entry);
  }
  return batch;
}

function utf8Length(text) {
  let bytes = 0;
  for (let i = 0; i < text.length; i += 1) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) {
      bytes += 1;
    } else if (unit < 0x800) {
      bytes += 2;
    } else if (unit >= 0xd800 && unit < 0xdc00 && i + 1 < text.length) {
      // A surrogate pair: one 4-byte character.
      bytes += 4;
      i += 1;
    } else {
      bytes += 3;
    }
  }
  return bytes;
}

function serialise(event) {
  try {
    return event === undefined || event === null ? null : EJSON.stringify(event, { relaxed: false });
  } catch (error) {
    return null;
  }
}
