//! Every command, one module (or folder) each: where command X lives is `commands/X`.
//! They share the `engine` (`run`, `links`), the
//! [`checkpoint`](crate::checkpoint) and the `report` formats.

pub(crate) mod completions;
pub(crate) mod demo;
pub(crate) mod export;
pub(crate) mod export_failed;
pub(crate) mod links;
pub mod run;
pub(crate) mod sandbox;
pub(crate) mod status;
pub(crate) mod stdout;
