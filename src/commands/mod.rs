//! One module per command.

pub mod demo;
pub mod links;
pub mod run;
pub mod sandbox;
pub mod status;
