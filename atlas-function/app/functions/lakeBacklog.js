// lakeBacklog: what waits on the Atlas side, for the one line lakeRedrive logs each run
// (`lake-backlog {...}`), so that an alert can fire on it. Dead letters are the one place
// an event waits for long (an outage, or a refusal an operator must look at); the buffer
// holds events between runs in batching mode; the breaker says whether the trigger is
// sending at all.
//
//   await context.functions.execute("lakeBacklog")
//   -> { deadLetters, oldestDeadLetterSeconds, buffered, oldestBufferedSeconds,
//        breaker: "closed" | "open" | "half-open" | "off", error }
//
// Cheap whatever the backlog: per collection one count() (without a filter the server
// answers from the collection's metadata) and one find of the oldest entry's time alone,
// limit 1, which the index atlas-function/indexes.js declares serves. Ages in whole seconds,
// null when nothing waits. Numbers and states only: never a document's contents or _id.
//
// It never throws: a part it cannot read is null and `error` says which, so the line (and
// an alert on it) still comes when the database is the problem.

exports = async function lakeBacklog() {
  const options = await context.functions.execute("lakeConfig");
  const db = context.services.get(options.dataSource).db(options.database);
  const now = Date.now();
  const errors = [];
  const letters = await waiting(db, options.deadLetterCollection, "deadLetteredAt", now, errors);
  const buffer = await waiting(db, options.bufferCollection, "bufferedAt", now, errors);
  let breaker;
  try {
    breaker = await context.functions.execute("lakeBreaker", "state");
  } catch (error) {
    breaker = { state: null, error: "lake breaker state failed: " + message(error) };
  }
  if (breaker.error) {
    errors.push(breaker.error);
  }
  return {
    deadLetters: letters.count,
    oldestDeadLetterSeconds: letters.oldestSeconds,
    buffered: buffer.count,
    oldestBufferedSeconds: buffer.oldestSeconds,
    breaker: breaker.state,
    error: errors.length > 0 ? errors.join("; ") : null,
  };
};

// How many entries a collection holds, and the age of the oldest by `field`. Only dates
// count for the age ($gte a date matches dates only): an entry edited by hand without one
// cannot hide the oldest real one, which it would by sorting first.
async function waiting(db, name, field, now, errors) {
  try {
    const collection = db.collection(name);
    const count = await collection.count({});
    const filter = {};
    filter[field] = { $gte: new Date(0) };
    const projection = { _id: 0 };
    projection[field] = 1;
    const order = {};
    order[field] = 1;
    const oldest = await collection.find(filter, projection).sort(order).limit(1).toArray();
    const time = oldest.length > 0 ? new Date(oldest[0][field]).getTime() : NaN;
    return {
      count: count,
      oldestSeconds: isNaN(time) ? null : Math.max(0, Math.floor((now - time) / 1000)),
    };
  } catch (error) {
    errors.push(name + " unreadable: " + message(error));
    return { count: null, oldestSeconds: null };
  }
}

function message(error) {
  return error && error.message ? error.message : String(error);
}
