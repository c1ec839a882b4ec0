// lakeBreaker: a circuit breaker in front of the lake endpoint. Without it, every change
// event spends up to retryBudgetMs retrying during an outage; an unordered trigger runs a
// bounded number of events at once, so at a high write rate it falls behind the change
// stream and can suspend (and lose events once its resume token leaves the oplog). With it,
// once one delivery has spent its retries on an endpoint that is unreachable or unwell,
// the trigger dead-letters the next events at once until `downUntil`.
//
//   await context.functions.execute("lakeBreaker", "check")
//     -> { open: false, probe: false }               closed: deliver
//     -> { open: false, probe: true }                half-open: deliver; this event tests
//                                                    the endpoint for the others
//     -> { open: true, downUntil, reason, message }  open: do not deliver, dead-letter
//   await context.functions.execute("lakeBreaker", "open", reason)  -> { ok, downUntil }
//   await context.functions.execute("lakeBreaker", "close")         -> { ok, closed }
//   await context.functions.execute("lakeBreaker", "state")
//     -> { state: "closed" | "open" | "half-open" | "off" }     read only, for lakeBacklog's
//                                                    line; half-open: the open time is over
//                                                    (the next event tests the endpoint) or
//                                                    one event is testing it; off:
//                                                    breakerOpenMs 0 (nothing is read)
//
// State: one document in options.stateCollection (next to the dead letters),
// { _id: "endpoint", downUntil, reason, openedAt, probeStartedAt }; none means closed.
// `reason` is the delivery's error ("HTTP 503 storage_unavailable ...", a network error
// with the URL's query cut out), never a document's contents.
//
// It never throws and every answer may carry `error`: a breaker that cannot be read or
// written must not cost an event, so a failed check says "closed" (deliver as usual) and
// the caller logs the error.

const ID = "endpoint";

exports = async function lakeBreaker(action, reason) {
  try {
    const options = await context.functions.execute("lakeConfig");
    const state = context.services
      .get(options.dataSource)
      .db(options.database)
      .collection(options.stateCollection);
    if (action === "check") {
      return await check(state, options);
    }
    if (action === "state") {
      return await stateOf(state, options);
    }
    if (action === "open") {
      return await open(state, options, reason);
    }
    if (action === "close") {
      const deleted = await state.deleteOne({ _id: ID });
      return { ok: true, closed: Boolean(deleted && deleted.deletedCount > 0) };
    }
    return failed(action, "lakeBreaker: unknown action " + JSON.stringify(action));
  } catch (error) {
    return failed(action, "lake breaker " + action + " failed: " + message(error));
  }
};

async function check(state, options) {
  const now = Date.now();
  const current = await state.findOne({ _id: ID });
  const until = current ? timeOf(current.downUntil) : NaN;
  if (isNaN(until)) {
    return { open: false, probe: false };
  }
  if (until > now) {
    return opened(current, until);
  }
  // Half-open: the first event to find it expired tests the endpoint, and marks it down for
  // that test's retry budget so the events meanwhile are still dead-lettered at once (not
  // all retrying together, which is the backlog this avoids). The compare-and-set on the
  // downUntil it read makes that one event; if it vanishes without an answer, the mark
  // expires and the next event tests again.
  const claim = await state.updateOne(
    { _id: ID, downUntil: current.downUntil },
    { $set: { downUntil: new Date(now + options.retryBudgetMs), probeStartedAt: new Date(now) } }
  );
  if (claim && claim.matchedCount === 1) {
    return { open: false, probe: true };
  }
  // Another event claimed the test first, or the breaker was closed or opened meanwhile.
  const after = await state.findOne({ _id: ID });
  const afterUntil = after ? timeOf(after.downUntil) : NaN;
  return !isNaN(afterUntil) && afterUntil > Date.now()
    ? opened(after, afterUntil)
    : { open: false, probe: false };
}

// What check would find, without claiming the test: reading the state must not change it.
async function stateOf(state, options) {
  if (!(options.breakerOpenMs > 0)) {
    return { state: "off" };
  }
  const current = await state.findOne({ _id: ID });
  const until = current ? timeOf(current.downUntil) : NaN;
  if (isNaN(until)) {
    return { state: "closed" };
  }
  return { state: until <= Date.now() || current.probeStartedAt ? "half-open" : "open" };
}

async function open(state, options, reason) {
  const now = Date.now();
  const downUntil = new Date(now + options.breakerOpenMs);
  await state.updateOne(
    { _id: ID },
    {
      $set: {
        downUntil: downUntil,
        reason: String(reason || "unknown error").slice(0, 500),
        openedAt: new Date(now),
      },
      $unset: { probeStartedAt: "" },
    },
    { upsert: true }
  );
  return { ok: true, downUntil: downUntil };
}

function opened(current, until) {
  const reason = typeof current.reason === "string" ? current.reason : "unknown error";
  return {
    open: true,
    probe: false,
    downUntil: new Date(until),
    reason: reason,
    message: "endpoint marked down until " + new Date(until).toISOString() + " after: " + reason,
  };
}

function failed(action, error) {
  if (action === "check") {
    return { open: false, probe: false, error: error };
  }
  return action === "state" ? { state: null, error: error } : { ok: false, error: error };
}

// A Date as the driver returns it; a number or text if someone edited the document by hand.
function timeOf(value) {
  if (value === undefined || value === null) {
    return NaN;
  }
  return new Date(value).getTime();
}

function message(error) {
  return error && error.message ? error.message : String(error);
}
