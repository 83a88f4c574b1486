//! # hirehook
//!
//! Turns Kombo's polled `GET /ats/applications` into a push stream of signed hiring
//! webhooks.
//!
//! # Layout
//!
//! - [`ats`]: the Kombo client: wire model, page parsing, paging and retries.
//! - [`sim`]: the built-in Kombo-compatible simulator (world, mutations, faults, server).
//! - [`config`]: the TOML config: `${VAR}` expansion, defaults, validation, `config check`.
//! - [`daemon`]: `hirehook run`: pollers and the deliverer until shutdown.
//! - [`demo`]: `hirehook demo`: everything on loopback, the event stream on screen.
//! - [`deliver`]: signing, the retry schedule, the SSRF guard, the delivery worker.
//! - [`diff`]: the pure diff: snapshot + fetched application -> new snapshot + events.
//! - [`event`]: the event catalogue, event ids and the webhook body.
//! - [`store`]: sled: snapshots, sync state, event log, outbox; one atomic batch per page.
//! - [`sync`]: one sync of one integration: page, diff, commit, then the watermark.
//! - [`secret`]: a string type that never prints its value.
//! - [`cli`]: the command line.

pub mod ats;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod deliver;
pub mod demo;
pub mod diff;
pub mod event;
pub mod secret;
pub mod sim;
pub mod store;
pub mod sync;
