//! Unit tests of the journal that need more than one of its files.

mod address_space;
mod chain;
mod format;
mod freed;
mod group;
mod head_hint;
mod prefault;
mod rebuild;
mod ring_reuse;
mod torn;
