//! The client endpoints: each client app with its controller and store,
//! handling what the broker delivers and acknowledging it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use softnet_persistence::{ClientAck, ClientController, ClientDecision, ClientKind};
use softnet_persistence::{ClientOptions, ClientStore, HandlerOrder, Uuid};

use super::config::{ClientConfig, Fault};
use super::engine::Sim;
use super::network::Up;
use super::site::SERVER;
use super::tally::ClientTally;
use crate::broker::{Deliver, FromClient};
use crate::power_cut::PowerCut;

pub(super) struct ClientSide {
    pub(super) cfg: ClientConfig,
    pub(super) client_id: i64,
    pub(super) dir: tempfile::TempDir,
    pub(super) key: String,
    pub(super) options: ClientOptions,
    /// The client file's simulated device.
    pub(super) cut: PowerCut,
    pub(super) ctl: Option<ClientController>,
    pub(super) handled: HashMap<Uuid, u32>,
    pub(super) restarts: u32,
    /// Stateful: duplicates per (restart number, subscription).
    pub(super) dup_since_restart: HashMap<(u32, String), u32>,
    /// Stateless: events the broker redelivered from the head since the
    /// last restart.
    pub(super) allowed: HashSet<Uuid>,
    pub(super) tally: ClientTally,
}

impl Sim {
    pub(super) fn client_down(&mut self, c: usize, fault: Fault) {
        let cs = &mut self.clients[c];
        let ctl = cs.ctl.take().expect("client app is up");
        let store = ctl.store().clone();
        let image = if fault == Fault::PowerCut && cs.cfg.file {
            self.client_cut_image(c, &store)
        } else {
            None
        };
        let path = store.file_path();
        drop(ctl);
        drop(store);
        if let (Some(image), Some(path)) = (image, path) {
            std::fs::write(path, image).expect("write the power-cut image");
        }
        let cs = &mut self.clients[c];
        cs.restarts += 1;
        cs.tally.restarts += 1;
        cs.allowed.clear();
    }

    pub(super) fn client_up(&mut self, c: usize) {
        let cs = &mut self.clients[c];
        let store = if cs.cfg.file {
            ClientStore::open_file(cs.dir.path(), SERVER, &cs.key, &cs.options)
                .expect("open the client store")
        } else {
            ClientStore::open_memory(&cs.options)
        };
        let kind = if cs.cfg.stateful {
            ClientKind::Stateful
        } else {
            ClientKind::Stateless
        };
        cs.ctl = Some(ClientController::new(
            Arc::new(store),
            kind,
            HandlerOrder::RecordAfterHandle,
        ));
    }

    pub(super) fn client_deliver(&mut self, c: usize, d: Deliver) {
        let cs = &mut self.clients[c];
        let Some(ctl) = cs.ctl.as_mut() else {
            return;
        };
        let ack = match ctl.incoming(&d.name, d.id).expect("incoming") {
            ClientDecision::Handle => {
                // The application handles it here.
                let n = cs.handled.entry(d.uid).or_insert(0);
                *n += 1;
                if *n > 1 {
                    let explained = if cs.cfg.stateful {
                        let k = cs
                            .dup_since_restart
                            .entry((cs.restarts, d.name.clone()))
                            .or_insert(0);
                        *k += 1;
                        cs.restarts > 0 && *k == 1
                    } else {
                        cs.allowed.remove(&d.uid)
                    };
                    if !explained {
                        cs.tally.unexplained_duplicates += 1;
                    }
                }
                ctl.handled(&d.name, d.id).expect("handled")
            }
            ClientDecision::AckDuplicate => ClientAck {
                name: d.name.clone(),
                id: d.id,
            },
        };
        self.send_up(c + 1, Up::Client(FromClient::Ack(ack)));
    }
}
