//! Running simulations: one, many in parallel, or a range of seeds summed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::config::SimConfig;
use super::engine::Sim;
use super::tally::{RunStats, Totals};

/// Runs one simulation.
pub fn run(cfg: &SimConfig) -> RunStats {
    let mut sim = Sim::new(cfg.clone());
    sim.start();
    sim.main_loop();
    sim.finish()
}

/// Runs each configuration (in parallel, one worker per CPU); results in
/// the order given.
pub fn run_many(cfgs: &[SimConfig]) -> Vec<RunStats> {
    let next = AtomicU64::new(0);
    let results = Mutex::new(Vec::with_capacity(cfgs.len()));
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..workers.min(cfgs.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst) as usize;
                let Some(cfg) = cfgs.get(i) else {
                    break;
                };
                let stats = run(cfg);
                results.lock().unwrap().push((i, stats));
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, s)| s).collect()
}

/// Runs `seeds` simulations of `base` (seeds 1..=seeds) and sums them.
pub fn run_seeds(base: &SimConfig, seeds: u64) -> Totals {
    let cfgs: Vec<SimConfig> = (1..=seeds)
        .map(|seed| SimConfig {
            seed: base.seed.wrapping_mul(1_000_003).wrapping_add(seed),
            ..base.clone()
        })
        .collect();
    Totals::of(&run_many(&cfgs))
}
