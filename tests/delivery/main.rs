//! The delivery controllers end to end: the broker model they are measured
//! against, and the measured delivery-quality table (docs/BEHAVIOUR.md
//! section 6) from the simulator with outages, restarts and power cuts.

mod broker_model;
mod delivery_quality;
mod fallback_uid;
