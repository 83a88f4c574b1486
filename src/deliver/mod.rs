//! Delivery: signing each attempt per Standard Webhooks and sending it, guarded against
//! requests into private networks.
//!
//! - [`sign`]: pure signing and receiver-side verification.
//! - [`ssrf`]: refuses non-global addresses; builds the delivery HTTP client.

pub mod sign;
pub mod ssrf;
