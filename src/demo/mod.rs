//! What `hirehook demo` shows (the command itself is `crate::cli::demo`):
//!
//! - [`describe`]: one readable line per event (pure).

pub mod describe;
