//! The in-memory network: one connection per endpoint, FIFO each way,
//! with delays, stalls and breaks.

use std::collections::VecDeque;

use super::engine::{ms, Ev, Sim};
use super::service::SvcOp;
use crate::broker::{Deliver, FromClient, FromService, Note, Out, ToService};

pub(super) enum Up {
    Service(FromService),
    Client(FromClient),
}

pub(super) enum Down {
    Service(ToService),
    Client(Deliver),
}

#[derive(Default)]
pub(super) struct Link {
    pub(super) app_up: bool,
    pub(super) outages: u32,
    pub(super) connected: bool,
    pub(super) epoch: u64,
    pub(super) up: VecDeque<Up>,
    pub(super) down: VecDeque<Down>,
    pub(super) up_last: u64,
    pub(super) down_last: u64,
}

impl Sim {
    fn delay(&mut self) -> u64 {
        if self.rng.chance(1, 300) {
            self.rng.range(31_000, 70_000)
        } else {
            self.rng.range(1, 250)
        }
    }

    pub(super) fn send_up(&mut self, ep: usize, msg: Up) {
        if !self.links[ep].connected {
            return;
        }
        let d = self.delay();
        let l = &mut self.links[ep];
        let at = (self.now + d).max(l.up_last);
        l.up_last = at;
        l.up.push_back(msg);
        let epoch = l.epoch;
        self.push(
            at,
            Ev::Arrive {
                ep,
                epoch,
                up: true,
            },
        );
    }

    pub(super) fn send_down(&mut self, ep: usize, msg: Down) {
        if !self.links[ep].connected {
            return;
        }
        let d = self.delay();
        let l = &mut self.links[ep];
        let at = (self.now + d).max(l.down_last);
        l.down_last = at;
        l.down.push_back(msg);
        let epoch = l.epoch;
        self.push(
            at,
            Ev::Arrive {
                ep,
                epoch,
                up: false,
            },
        );
    }

    pub(super) fn arrive(&mut self, ep: usize, epoch: u64, up: bool) {
        let l = &mut self.links[ep];
        if l.epoch != epoch || !l.connected {
            return;
        }
        if up {
            let msg = l.up.pop_front().expect("message in transit");
            self.deliver_to_broker(ep, msg);
        } else {
            match l.down.pop_front().expect("message in transit") {
                Down::Service(m) => match m {
                    ToService::Online(uid) => self.svc_op(SvcOp::Online(uid)),
                    ToService::Ack(uid) => self.svc_op(SvcOp::Ack(uid)),
                    ToService::Rejected(uid) => self.svc_op(SvcOp::Rejected(uid)),
                },
                Down::Client(d) => self.client_deliver(ep - 1, d),
            }
        }
    }

    fn deliver_to_broker(&mut self, ep: usize, msg: Up) {
        match msg {
            Up::Service(m) => self.broker.service_message(m),
            Up::Client(m) => self.broker.client_message(ep - 1, m),
        }
        self.after_broker();
    }

    pub(super) fn after_broker(&mut self) {
        for out in self.broker.drain_outputs() {
            match out {
                Out::Service(m) => self.send_down(0, Down::Service(m)),
                Out::Client(c, d) => self.send_down(c + 1, Down::Client(d)),
            }
        }
        for note in self.broker.drain_notes() {
            match note {
                Note::Accepted {
                    uid, target, name, ..
                } => {
                    let info = self.events.get_mut(&uid).expect("accepted a raised event");
                    info.accepted += 1;
                    info.target = target;
                    if info.accepted == 1 {
                        self.accepted_order.push(uid);
                    } else {
                        let n = info.accepted;
                        self.trace(|| format!("broker: {uid} '{name}' queued again ({n} times)"));
                    }
                    // Each name's events reach its queue in raise order
                    // (uids carry the raise number in their low bits).
                    let seq = uid.as_u128() as u64;
                    let last = self.last_accepted.entry(name.clone()).or_insert(0);
                    if seq < *last {
                        let before = *last;
                        self.violation(format!(
                            "'{name}': event {uid} (raise #{seq}) entered the queue after raise \
                             #{before}"
                        ));
                    } else {
                        *last = seq;
                    }
                }
                Note::DuplicateAcked(_) => self.broker_dup_acks += 1,
                Note::Rejected(_) => {}
                Note::Removed(uid, why) => {
                    self.gone.entry(uid).or_insert(why);
                }
                Note::Redeliverable { client, uids } => {
                    let cs = &mut self.clients[client];
                    for uid in uids {
                        if cs.allowed.insert(uid) && cs.restarts > 0 {
                            cs.tally.redeliverable += 1;
                        }
                    }
                }
            }
        }
        if let Some(d) = self.broker.next_deadline() {
            let at = ms(d).max(self.now);
            if self.broker_timer.is_none_or(|t| at < t) {
                self.broker_timer = Some(at);
                self.push(at, Ev::BrokerTimer);
            }
        }
    }

    /// Breaks endpoint `ep`'s connection, if it has one. `app_gone`: the
    /// application is going down too (else it is told it is offline).
    pub(super) fn teardown(&mut self, ep: usize, app_gone: bool) {
        let l = &mut self.links[ep];
        if !l.connected {
            return;
        }
        l.connected = false;
        l.epoch += 1;
        let ups: Vec<Up> = l.up.drain(..).collect();
        l.down.clear();
        // The kernel had sent some of it: a prefix still reaches the broker
        // (its replies are lost with the connection).
        let reach = if self.rng.chance(1, 2) {
            self.rng.below(ups.len() as u64 + 1) as usize
        } else {
            0
        };
        for msg in ups.into_iter().take(reach) {
            self.deliver_to_broker(ep, msg);
        }
        if ep > 0 {
            self.broker.client_disconnected(ep - 1);
            self.after_broker();
        }
        if !app_gone && ep == 0 {
            self.svc_op(SvcOp::Disconnected);
        }
    }

    pub(super) fn maybe_connect(&mut self, ep: usize) {
        let l = &self.links[ep];
        if l.app_up && l.outages == 0 && !l.connected {
            let epoch = l.epoch;
            let at = self.now + self.rng.range(20, 2000);
            self.push(at, Ev::Connect { ep, epoch });
        }
    }

    pub(super) fn connect(&mut self, ep: usize, epoch: u64) {
        let l = &mut self.links[ep];
        if l.epoch != epoch || l.connected || !l.app_up || l.outages > 0 {
            return;
        }
        l.connected = true;
        l.epoch += 1;
        if ep == 0 {
            if let Some(ctl) = self.svc.ctl.as_mut() {
                ctl.connected();
            }
            self.broker.service_connected();
            self.after_broker();
        } else {
            let cs = &self.clients[ep - 1];
            let hello = cs
                .ctl
                .as_ref()
                .expect("client app is up")
                .connected()
                .expect("client hello");
            self.send_up(ep, Up::Client(FromClient::Hello(hello)));
        }
    }
}
