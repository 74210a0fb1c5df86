//! CSV input (being written).
