// forwardChange: the database trigger's function. Sends each change event to the lake
// (the Azure Function) and makes sure it is never lost:
//
// - the event is serialised as canonical Extended JSON (lossless: every BSON type kept)
//   and sent signed, with retries, by lakeDeliver;
// - if it cannot be delivered, it is stored in the dead-letter collection (lakeDeadLetter)
//   and the function throws, so the failure shows in the trigger's logs; the scheduled
//   lakeRedrive sends it again later;
// - in batching mode (lakeOptions.batching) it is only appended to the buffer collection;
//   lakeRedrive posts the buffer as JSON arrays;
// - while the circuit breaker (lakeBreaker) says the endpoint is down, the event is
//   dead-lettered at once instead of spending the retry budget on an endpoint known to be
//   down; a delivery that spends its retries on an unreachable or unwell endpoint opens it.
//
// Atlas Functions have no retry of their own: a throw here is logged and the trigger moves
// on, which is why the event is kept before throwing. Nothing here logs document contents.

exports = async function forwardChange(changeEvent) {
  const options = await context.functions.execute("lakeConfig");
  options.problems.forEach(function (problem) {
    console.error("lakeOptions: " + problem);
  });
  const eventId = eventIdOf(changeEvent);
  const about = {
    operationType: changeEvent && changeEvent.operationType,
    ns: changeEvent && changeEvent.ns,
  };
  let body;
  try {
    body = EJSON.stringify(changeEvent, { relaxed: false });
  } catch (error) {
    // Nothing can be sent without a body; keep the event object itself for an operator.
    await keep(options, eventId, null, about, { ok: false, permanent: true, attempts: 0,
      error: "cannot serialise the event: " + message(error) }, changeEvent);
    throw new Error("lake delivery of event " + eventId + " failed: cannot serialise it (" +
      message(error) + "); kept in " + options.database + "." + options.deadLetterCollection);
  }

  if (options.batching) {
    try {
      const buffer = context.services
        .get(options.dataSource)
        .db(options.database)
        .collection(options.bufferCollection);
      // `bytes` lets lakeRedrive size a batch before it loads any body.
      await insertOnce(buffer, {
        _id: eventId,
        body: body,
        bytes: utf8Length(body),
        about: about,
        bufferedAt: new Date(),
      });
      return { buffered: true, eventId: eventId };
    } catch (error) {
      // The buffer refused it: deliver it now rather than lose it.
      console.error("lake buffer insert failed for event " + eventId + ": " + message(error));
    }
  }

  const breaker = await checkBreaker(options);
  let outcome;
  if (breaker.open) {
    // Not one request: the event goes straight to the dead letters, which lakeRedrive
    // sends once the endpoint answers again.
    outcome = { ok: false, permanent: false, attempts: 0, status: null, error: breaker.message };
  } else {
    try {
      outcome = await context.functions.execute("lakeDeliver", body);
    } catch (error) {
      // lakeDeliver reports failures instead of throwing; a throw is a fault of the runtime
      // (a missing value, crypto, timers). The event is kept all the same.
      outcome = { ok: false, permanent: false, attempts: 0, status: null,
        error: "delivery failed unexpectedly: " + message(error) };
    }
    await settleBreaker(options, breaker, outcome);
  }
  if (outcome.ok) {
    return { delivered: true, eventId: eventId, status: outcome.status, attempts: outcome.attempts };
  }
  const failed =
    "lake delivery of event " + eventId + " (" + about.operationType + ") failed after " +
    outcome.attempts + " attempt(s): " + outcome.error;
  try {
    await keep(options, eventId, body, about, outcome, null);
  } catch (error) {
    throw new Error(failed + "; dead-lettering failed too, the event is LOST: " + message(error));
  }
  throw new Error(
    failed + "; kept in " + options.database + "." + options.deadLetterCollection +
      ", lakeRedrive sends it again"
  );
};

// The breaker's state, or "closed" when it is off or cannot be read: the breaker may save
// time, never cost an event.
async function checkBreaker(options) {
  if (!(options.breakerOpenMs > 0)) {
    return { open: false, probe: false };
  }
  let state;
  try {
    state = await context.functions.execute("lakeBreaker", "check");
  } catch (error) {
    state = { open: false, probe: false, error: "lake breaker check failed: " + message(error) };
  }
  if (state.error) {
    console.error(state.error + " (delivering as if it were closed)");
  }
  return state;
}

// What the endpoint did decides the breaker: retries spent on an endpoint that is
// unreachable or unwell (network, no answer, 408, 429, 5xx) open it; an answer that ends
// the test of a half-open breaker (a 2xx, or a refusal of this event for good: the
// endpoint is up) closes it. A failure before any request (attempts 0) says nothing about
// the endpoint and changes nothing (a test claimed by this event expires by itself).
// Errors are logged only: the event's own fate does not depend on them.
async function settleBreaker(options, breaker, outcome) {
  if (!(options.breakerOpenMs > 0) || !(outcome.attempts > 0)) {
    return;
  }
  const unwell = !outcome.ok && !outcome.permanent;
  if (!unwell && !breaker.probe) {
    return;
  }
  let result;
  try {
    result = unwell
      ? await context.functions.execute("lakeBreaker", "open", outcome.error)
      : await context.functions.execute("lakeBreaker", "close");
  } catch (error) {
    result = { ok: false, error: "lake breaker update failed: " + message(error) };
  }
  if (result && result.error) {
    console.error(result.error);
  }
}

// Stores an undelivered event in the dead-letter collection: its body, or (when it could
// not even be serialised) the event object itself.
async function keep(options, eventId, body, about, outcome, rawEvent) {
  await context.functions.execute("lakeDeadLetter", {
    eventId: eventId,
    body: body,
    rawEvent: rawEvent,
    about: about,
    outcome: outcome,
    source: "trigger",
  });
}

// The resume token string (`_id._data`): unique per event, so a buffered or dead-lettered
// event is stored once however often it is handed over.
function eventIdOf(changeEvent) {
  const id = changeEvent && changeEvent._id;
  if (id && typeof id._data === "string" && id._data.length > 0) {
    return id._data;
  }
  return new BSON.ObjectId().toHexString();
}

async function insertOnce(collection, document) {
  try {
    await collection.insertOne(document);
  } catch (error) {
    const duplicate =
      (error && error.code === 11000) || /E11000|duplicate key/i.test(message(error));
    if (!duplicate) {
      throw error;
    }
  }
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

function message(error) {
  return error && error.message ? error.message : String(error);
}
