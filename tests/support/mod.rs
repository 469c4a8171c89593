//! Test support shared by `tests/delivery_quality.rs` and
//! `examples/delivery_quality.rs`: a broker model and a deterministic
//! simulator that runs the delivery controllers through it. Not part of the
//! product.

// Each user of this module uses a different part of it.
#![allow(dead_code)]

pub mod broker;
pub mod sim;
