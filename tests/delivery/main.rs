//! The delivery controllers end to end: the broker model they are measured
//! against, the measured delivery-quality table (docs/BEHAVIOUR.md section
//! 6) from the simulator with outages, restarts, power cuts and level-2
//! failures, and the controllers' own invariants over many seeds.

mod broker_model;
mod delivery_quality;
mod fallback_uid;
mod in_flight_first;
mod power_cut_drop;
