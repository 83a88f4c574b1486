//! Delivery: signing each attempt per Standard Webhooks, the retry schedule, the SSRF
//! guard, and the worker that sends.
//!
//! - [`sign`]: pure signing and receiver-side verification.
//! - [`retry`]: pure: when a failed delivery is tried again, or dead-lettered.
//! - [`send`]: the signed request, error descriptions and pacing shared by every sender.
//! - [`ssrf`]: refuses non-global addresses; builds the delivery HTTP client.
//! - [`worker`]: one task per subscriber: due deliveries → sign → POST → record.

pub mod retry;
pub mod send;
pub mod sign;
pub mod ssrf;
pub mod worker;
