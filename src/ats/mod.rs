//! Kombo's unified ATS API: the wire model, page parsing and the client.
//!
//! - [`model`]: the `Application` record, field for field, both directions.
//! - [`page`]: parsing one page record by record (a bad record does not fail the page).
//! - [`client`]: `GET /ats/applications` with cursor paging and retries.
//! - `convert`: the wire record into [`crate::domain::Application`], at the page.
//! - [`error`]: typed errors that name the integration and page.

mod body;
pub mod client;
mod convert;
pub mod error;
pub mod model;
pub mod page;

pub use client::{ApplicationsQuery, ClientConfig, KomboClient, Page, Pager, RetryPolicy};
pub use error::{KomboError, PageRef, RetryNotice};
pub use model::{Application, Outcome, Timestamp};
