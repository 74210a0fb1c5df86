//! Every command, one module (or folder) each: where command X lives is `commands/X`.
//! They share the [`engine`](crate::engine) (`run`, `links`), the
//! [`checkpoint`](crate::checkpoint) and the [`report`](crate::report) formats.

pub mod completions;
pub mod demo;
pub mod export;
pub mod links;
pub mod run;
pub mod sandbox;
pub mod status;
