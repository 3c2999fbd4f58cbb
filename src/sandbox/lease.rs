//! The reaper's lease: of all the servers sharing a store, the one holding
//! it runs the reaper and applies what the engines report (the engine
//! reconciler); the others wait to take it over.
//!
//! A lease lasts `ttl` by the database's clock and its holder renews it
//! every third of that. A holder that dies or hangs stops renewing, and
//! another server takes the lease within `ttl` plus one renewal interval
//! of its last renewal. A holder counts its lease as held only until `ttl`
//! after it asked for it (by its own clock, started before the call), so a
//! server that hung past its lease does not act on it when it wakes: it
//! must renew first. Even so, every transition is compare-and-set, so two
//! servers that both believed they held it could not drive one sandbox
//! twice. A server that shuts down gives the lease up at once.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use super::Manager;

/// The lease's name in the store.
pub const REAPER_LEASE: &str = "reaper";

/// Whether this server holds the lease now. Cheap to clone.
#[derive(Clone)]
pub struct Lease {
    /// Until when the lease is held, by this server's clock; `None` when
    /// it is not.
    until: watch::Receiver<Option<Instant>>,
}

impl Lease {
    /// Whether the lease is held at this moment.
    pub fn held(&self) -> bool {
        self.until
            .borrow()
            .is_some_and(|until| Instant::now() < until)
    }

    /// Waits until the lease is taken after it was not held (a renewal is
    /// not a gain); `false` when the keeper is gone.
    pub async fn gained(&mut self) -> bool {
        let mut was_held = self.until.borrow_and_update().is_some();
        loop {
            if self.until.changed().await.is_err() {
                return false;
            }
            let held = self.until.borrow_and_update().is_some();
            if held && !was_held {
                return true;
            }
            was_held = held;
        }
    }
}

/// The keeper of one server's claim on the lease.
pub struct LeaseKeeper {
    /// The task taking and renewing it.
    task: JoinHandle<()>,
    /// Whether it is held.
    pub lease: Lease,
    holder: String,
    manager: Manager,
}

impl LeaseKeeper {
    /// Gives the lease up, if held, so that another server takes it at once.
    pub async fn release(self) {
        self.task.abort();
        let _ = self.task.await;
        self.manager.metrics().set_lease_held(false);
        if let Err(error) = self
            .manager
            .store()
            .release_lease(REAPER_LEASE, &self.holder)
            .await
        {
            warn!(%error, "cannot give the reaper's lease up; it expires by itself");
        }
    }
}

/// Starts taking and renewing the reaper's lease as `holder` (a name
/// unique to this server process), each claim lasting `ttl`.
pub fn keep_lease(manager: Manager, holder: String, ttl: Duration) -> LeaseKeeper {
    let (until_tx, until) = watch::channel(None);
    let renew_every = ttl / 3;
    let task = {
        let manager = manager.clone();
        let holder = holder.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(renew_every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let asked = Instant::now();
                let held = match manager
                    .store()
                    .acquire_lease(REAPER_LEASE, &holder, ttl)
                    .await
                {
                    Ok(held) => held,
                    Err(error) => {
                        warn!(%error, "cannot renew or take the reaper's lease");
                        false
                    }
                };
                let was_held = until_tx.borrow().is_some();
                if held != was_held {
                    if held {
                        info!(%holder, "holding the reaper's lease: this server runs the reaper");
                    } else {
                        info!(%holder, "not holding the reaper's lease: another server runs the reaper");
                    }
                    manager.metrics().set_lease_held(held);
                }
                until_tx.send_replace(held.then_some(asked + ttl));
            }
        })
    };
    LeaseKeeper {
        task,
        lease: Lease { until },
        holder,
        manager,
    }
}
