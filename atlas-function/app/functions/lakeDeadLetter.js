// lakeDeadLetter: keeps an event that could not be delivered, with why, so that the
// scheduled lakeRedrive can send it later and an operator can see it.
//
//   await context.functions.execute("lakeDeadLetter", {
//     eventId, body, about: { operationType, ns }, outcome, source: "trigger" | "batch",
//     rawEvent   // only when the event could not be serialised: kept as it came
//   })
//   await context.functions.execute("lakeDeadLetter", [entry, entry, ...])   // many at once
//
// The dead letter's _id is the event's resume token: an event dead-lettered twice stays
// one document (the single form adds up its attempts). `body` is the exact canonical Extended JSON that was
// sent, so a redrive re-sends the same bytes. Throws if the event could not be stored.

exports = async function lakeDeadLetter(entry) {
  const options = await context.functions.execute("lakeConfig");
  const collection = context.services
    .get(options.dataSource)
    .db(options.database)
    .collection(options.deadLetterCollection);
  const now = new Date();
  if (Array.isArray(entry)) {
    return await keepAll(collection, entry, now);
  }
  const letter = letterOf(entry, now);
  try {
    await collection.insertOne(letter.document);
    return { deadLettered: true, already: false };
  } catch (error) {
    if (!isDuplicateKey(error)) {
      throw error;
    }
    await collection.updateOne(
      { _id: entry.eventId },
      { $set: letter.failure, $inc: { attempts: letter.document.attempts } }
    );
    return { deadLettered: true, already: true };
  }
};

// Many events at once (a batch the handler refused for good): one unordered insertMany, so
// every event not kept yet is inserted whatever happens to the others, and a run costs one
// operation instead of one or two per event (Atlas limits async operations per function
// run). An event kept already (same resume token: E11000) stays as it is, without the
// update of its error and attempts that the single form makes. Throws unless every event
// is in the collection afterwards: the caller removes them from the buffer after this.
async function keepAll(collection, entries, now) {
  const documents = entries.map(function (entry) {
    return letterOf(entry, now).document;
  });
  if (documents.length === 0) {
    return { deadLettered: 0 };
  }
  try {
    await collection.insertMany(documents, { ordered: false });
    return { deadLettered: documents.length };
  } catch (error) {
    // The driver lists one write error per document it could not insert (a single one
    // may come unwrapped). Anything but a duplicate is a real failure.
    const writeErrors = error && error.writeErrors ? [].concat(error.writeErrors) : [];
    if (writeErrors.length > 0 && !writeErrors.every(isDuplicateKey)) {
      throw error;
    }
    if (writeErrors.length === 0 && !isDuplicateKey(error)) {
      throw error;
    }
    // Duplicates only. An insert that stopped at the first of them (ordered, should the
    // option not be honoured) has left the rest out, so look before trusting it, and
    // insert what is missing once more.
    const present = await collection
      .find({ _id: { $in: documents.map(idOf) } }, { _id: 1 })
      .toArray();
    const kept = {};
    present.forEach(function (document) {
      kept[String(document._id)] = true;
    });
    const missing = documents.filter(function (document) {
      return !kept[String(document._id)];
    });
    if (missing.length > 0) {
      await collection.insertMany(missing, { ordered: false });
    }
    return { deadLettered: documents.length };
  }
}

function idOf(document) {
  return document._id;
}

// The dead letter for one entry, and the part of it that a later failure updates.
function letterOf(entry, now) {
  const outcome = entry.outcome || {};
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
  return { document: document, failure: failure };
}

// An error, or one write error of a bulk write (message in `errmsg`), for a duplicate _id.
function isDuplicateKey(error) {
  const text = error && (error.errmsg || error.message) ? error.errmsg || error.message : error;
  return (error && error.code === 11000) || /E11000|duplicate key/i.test(String(text));
}
