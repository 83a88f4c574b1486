//! The built-in Kombo-compatible simulator.

pub mod cli;
