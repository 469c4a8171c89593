//! The id backend trait: where a client store keeps its (name -> last id)
//! pairs. The memory level needs none (the store's own map is the data); the
//! file level and user code implement this.

use crate::error::Result;

/// Durable storage of the last handled instance id per subscription name.
///
/// Contract the store relies on:
/// - `put` is atomic with respect to crashes: afterwards a reload yields,
///   for that name, the old id or the new one, never garbage, and never
///   disturbs other names;
/// - `load` visits every stored pair once (any order);
/// - an `Err` from any method is a failure of the level: the store keeps
///   running in memory with every id it knows, and reports it.
pub trait IdStore: Send {
    /// Visits every stored (name, id) pair.
    fn load(&mut self, visit: &mut dyn FnMut(&str, i64)) -> Result<()>;
    /// Stores `id` as the last handled id of `name`.
    fn put(&mut self, name: &str, id: i64) -> Result<()>;
    /// Forgets every pair.
    fn clear(&mut self) -> Result<()>;
    /// Makes every put so far durable.
    fn flush(&mut self) -> Result<()>;
}
