//! MongoDB Atlas change events in, one lake file per change out.
//!
//! Layout: `cli` reads the command line, `configuration` reads settings, `telemetry` sets
//! up logs, `startup` builds and runs the application, `server` accepts connections and
//! times them out, `routes` speaks the Azure Functions custom-handler protocol, `ingest`
//! turns a body into stored records, `domain` holds the parsed types, and
//! `sink` is where records are stored. `signature` checks signed requests; `error` maps
//! failures to HTTP answers.

mod blocking;
pub mod cli;
pub mod compact;
pub mod configuration;
pub mod domain;
pub(crate) mod error;
pub(crate) mod ingest;
pub mod mirror;
pub(crate) mod routes;
pub(crate) mod server;
pub(crate) mod signature;
pub mod sink;
pub mod startup;
pub mod telemetry;
