//! # hirehook
//!
//! Turns Kombo's polled `GET /ats/applications` into a push stream of signed hiring
//! webhooks.
//!
//! # Layout
//!
//! - [`addr`]: which IP addresses are public unicast (the SSRF guard's rule).
//! - [`admin`]: the admin HTTP server: health, metrics, the `/v1` API, Kombo's push trigger.
//! - [`ats`]: the Kombo client: wire model, page parsing, paging and retries.
//! - [`sim`]: the built-in Kombo-compatible simulator (world, mutations, faults, server).
//! - [`config`]: the TOML config: `${VAR}` expansion, defaults, validation, `config check`.
//! - [`daemon`]: `hirehook run`: pollers, the deliverer and the admin server until shutdown.
//! - [`demo`]: `hirehook demo`: everything on loopback, the event stream on screen.
//! - [`deliver`]: signing, the retry schedule, the SSRF guard, the delivery worker.
//! - [`diff`]: the pure diff: snapshot + fetched application -> new snapshot + events.
//! - [`domain`]: an application as the diff reads it, and the enums records and events share.
//! - [`event`]: the event catalogue, event ids and the webhook body.
//! - [`held`]: the operator's release or drop of events the mass-change guard held.
//! - [`inspect`]: operator views (status, event with deliveries) for the API and the CLI.
//! - [`store`]: the seam over sled and PostgreSQL: snapshots, sync state, event log, outbox;
//!   one atomic commit per page; retention's sweep.
//! - [`store_health`]: the store failures the daemon ran into lately, for `/readyz`.
//! - [`sync`]: one sync of one integration: page, diff, commit, then the watermark.
//! - [`triggers`]: "poll now" per integration, pulled by the admin API and Kombo's webhook.
//! - [`metrics`]: Prometheus metrics: one registry per daemon, store gauges on scrape.
//! - [`redact`]: URLs without credentials, upstream texts cut to a bounded length.
//! - [`replay`]: re-sending logged or exported events to a URL, signed, in log order.
//! - [`retention`]: applying `[retention]`: the daemon's sweep task and `store compact`.
//! - [`secret`]: a string type that never prints its value.
//! - [`clock`]: where "now" comes from (the wall clock, or tokio's in tests).
//! - [`cli`]: the command line.

pub mod addr;
pub mod admin;
pub mod alloc;
pub mod ats;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod deliver;
pub mod demo;
pub mod diff;
pub mod domain;
pub mod erase;
pub mod event;
pub mod held;
pub mod inspect;
pub mod leases;
pub mod metrics;
pub mod redact;
pub mod replay;
pub mod retention;
pub mod secret;
pub mod sim;
pub mod store;
pub mod store_health;
pub mod sync;
pub mod triggers;
