// lakeDeadLetter: keeps an event that could not be delivered, with why, so that the
// scheduled lakeRedrive can send it later and an operator can see it.
//
//   await context.functions.execute("lakeDeadLetter", {
//     eventId, body, about: { operationType, ns }, outcome, source: "trigger" | "batch",
//     rawEvent   // only when the event could not be serialised: kept as it came
//   })
//
// The dead letter's _id is the event's resume token: an event dead-lettered twice stays
// one document (its attempts add up). `body` is the exact canonical Extended JSON that was
// sent, so a redrive re-sends the same bytes. Throws if the event could not be stored.

exports = async function lakeDeadLetter(entry) {
  const options = await context.functions.execute("lakeConfig");
  const collection = context.services
    .get(options.dataSource)
    .db(options.database)
    .collection(options.deadLetterCollection);
  const outcome = entry.outcome || {};
  const now = new Date();
  const failure = {
    error: outcome.error || "unknown error",
    status: typeof outcome.status === "number" ? outcome.status : null,
    permanent: outcome.permanent === true,
    response: outcome.response || null,
    lastAttemptAt: now,
  };
  const document = Object.assign(
    {
      _id: entry.eventId,
      body: entry.body,
      source: entry.source,
      operationType: (entry.about && entry.about.operationType) || null,
      ns: (entry.about && entry.about.ns) || null,
      attempts: outcome.attempts || 0,
      redriveFailures: 0,
      deadLetteredAt: now,
      // Due at the next lakeRedrive run.
      nextAttemptAt: now,
    },
    entry.rawEvent ? { event: entry.rawEvent } : {},
    failure
  );
  try {
    await collection.insertOne(document);
    return { deadLettered: true, already: false };
  } catch (error) {
    if (!isDuplicateKey(error)) {
      throw error;
    }
    await collection.updateOne(
      { _id: entry.eventId },
      { $set: failure, $inc: { attempts: outcome.attempts || 0 } }
    );
    return { deadLettered: true, already: true };
  }
};

function isDuplicateKey(error) {
  return (
    (error && error.code === 11000) ||
    /E11000|duplicate key/i.test(String(error && error.message ? error.message : error))
  );
}
