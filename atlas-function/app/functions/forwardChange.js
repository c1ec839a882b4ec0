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
  const body = EJSON.stringify(changeEvent, { relaxed: false });

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

  const outcome = await context.functions.execute("lakeDeliver", body);
  if (outcome.ok) {
    return { delivered: true, eventId: eventId, status: outcome.status, attempts: outcome.attempts };
  }
  const failed =
    "lake delivery of event " + eventId + " (" + about.operationType + ") failed after " +
    outcome.attempts + " attempt(s): " + outcome.error;
  try {
    await context.functions.execute("lakeDeadLetter", {
      eventId: eventId,
      body: body,
      about: about,
      outcome: outcome,
      source: "trigger",
    });
  } catch (error) {
    throw new Error(failed + "; dead-lettering failed too, the event is LOST: " + message(error));
  }
  throw new Error(
    failed + "; kept in " + options.database + "." + options.deadLetterCollection +
      ", lakeRedrive sends it again"
  );
};

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
