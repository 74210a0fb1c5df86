//! The Podero simulator (being written).
