//! Delivery: signing, the retry schedule, the SSRF guard and the worker.

pub mod retry;
pub mod worker;
