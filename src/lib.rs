//! podero-onboard: onboard an existing customer base into Podero.
pub mod input;
pub mod sandbox;
