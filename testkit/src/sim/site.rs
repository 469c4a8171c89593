//! The site the broker serves: the event names and their kinds.

use std::time::Duration;

use super::config::SimConfig;
use crate::broker::SiteKind;

pub(super) const QUEUEING: [&str; 6] = ["Temp0", "Temp1", "Temp2", "Temp3", "Temp4", "Temp5"];
pub(super) const REPLACING: [&str; 3] = ["Door", "Alarm", "Mode"];
pub(super) const PRIVATE: &str = "Notice";
/// Not defined on the site: the broker rejects it.
pub const UNKNOWN: &str = "Bogus";
pub(super) const SERVER: &str = "broker.example.net";
pub(super) const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn site(cfg: &SimConfig) -> Vec<(String, SiteKind)> {
    let mut site: Vec<(String, SiteKind)> = QUEUEING
        .iter()
        .map(|n| {
            (
                n.to_string(),
                SiteKind::Queueing {
                    max_len: cfg.queue_len,
                    lifetime: cfg.queue_lifetime,
                },
            )
        })
        .collect();
    site.extend(
        REPLACING
            .iter()
            .map(|n| (n.to_string(), SiteKind::Replacing)),
    );
    site.push((PRIVATE.to_string(), SiteKind::Private));
    site
}
