// forwardChange: the database trigger's function. Sends each change event to the lake
// (the Azure Function) and makes sure it is never lost:
//
// - the event is serialised as canonical Extended JSON (lossless: every BSON type kept)
//   and sent signed, with retries, by lakeDeliver;
// - if it cannot be delivered, it is stored in the dead-letter collection (lakeDeadLetter)
//   and the function throws, so the failure shows in the trigger's logs; the scheduled
//   lakeRedrive sends it again later;
// - in batching mode (lakeOptions.batching) it is only appended to the buffer collection;
//   lakeRedrive posts the buffer as JSON arrays.
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
      await insertOnce(buffer, { _id: eventId, body: body, about: about, bufferedAt: new Date() });
      return { buffered: true, eventId: eventId };
    } catch (error) {
      // The buffer refused it: deliver it now rather than lose it.
      console.error("lake buffer insert failed for event " + eventId + ": " + message(error));
    }
  }

  let outcome;
  try {
    outcome = await context.functions.execute("lakeDeliver", body);
  } catch (error) {
    // lakeDeliver reports failures instead of throwing; a throw is a fault of the runtime
    // (a missing value, crypto, timers). The event is kept all the same.
    outcome = { ok: false, permanent: false, attempts: 0, status: null,
      error: "delivery failed unexpectedly: " + message(error) };
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

function message(error) {
  return error && error.message ? error.message : String(error);
}
