// The indexes the functions' sorted reads need, in the lake_delivery database: lakeRedrive
// takes the oldest dead letters and buffered events, lakeBacklog the oldest one's age. An
// App Services app cannot declare indexes, so this mongosh script does, once (creating an
// index that exists is a no-op):
//
//   mongosh "<connection string>" atlas-function/indexes.js
//
// Without them each run sorts whole collections (dead letters hold bodies of up to 16 MB).
// If lakeOptions names another database or collections, change the names below.
// test/backlog.test.js checks that every sort the functions ask for is served by one of these.

const LAKE_INDEXES = {
  database: "lake_delivery",
  collections: {
    dead_letters: [{ deadLetteredAt: 1, _id: 1 }],
    buffer: [{ bufferedAt: 1, _id: 1 }],
  },
};

if (typeof db !== "undefined" && db !== null) {
  const lake = db.getSiblingDB(LAKE_INDEXES.database);
  Object.keys(LAKE_INDEXES.collections).forEach(function (name) {
    LAKE_INDEXES.collections[name].forEach(function (key) {
      print(name + ": " + lake.getCollection(name).createIndex(key));
    });
  });
}

if (typeof module !== "undefined") {
  module.exports = LAKE_INDEXES;
}
