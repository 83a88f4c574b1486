//! The integration tests, one binary: each module is one area (what was one test binary
//! each), all sharing the helpers in [`common`] and one link of the crate.
//!
//! `tests/admin_hostile.rs` stays a binary of its own: it counts the process's open file
//! descriptors, which other tests running beside it in one process would disturb.

mod common;

mod admin;
mod ats_model;
mod config_cli;
mod crash;
mod db_outage;
mod delivery;
mod delivery_schedule;
mod demo;
mod deploy;
mod disk_faults;
mod docs_events;
mod erase;
mod examples_receiver;
mod examples_relays;
mod fuzz_corpus;
mod hostile_upstream;
mod inspect_cli;
mod kombo_client;
mod pg_connect;
mod repair_cli;
mod replay;
mod replicas;
mod run_cli;
mod signing_interop;
mod sim;
mod ssrf;
mod store_cli;
mod store_contract;
mod subscriber_faults;
mod sync;
mod sync_cli;
mod upstream_faults;
