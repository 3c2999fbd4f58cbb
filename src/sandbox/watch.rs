//! Streams of lifecycle events, read from the store in revision order.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::sync::watch;

use super::{Manager, SandboxEvent};
use crate::error::{Error, Result};
use crate::store::{EventQuery, Store};

/// How many events one store read fetches.
const EVENT_BATCH: usize = 256;

struct Cursor {
    store: Arc<dyn Store>,
    query: EventQuery,
    buffered: VecDeque<SandboxEvent>,
    revisions: watch::Receiver<i64>,
    poll_interval: Duration,
    ended: bool,
}

impl Manager {
    /// Every retained event of `tenant` after `after_revision` (only those of
    /// `sandbox_id` when given), then new ones as they are written. The
    /// stream ends after yielding an error; it never skips an event.
    ///
    /// Events written by this replica wake the stream at once; events of
    /// other replicas sharing the store are seen within the poll interval.
    pub async fn watch(
        &self,
        tenant: &str,
        after_revision: i64,
        sandbox_id: Option<String>,
    ) -> Result<impl Stream<Item = Result<SandboxEvent>> + Send + 'static> {
        if after_revision < 0 {
            return Err(Error::invalid_argument(
                "after_revision",
                "must be 0 or a revision from an earlier event",
            ));
        }
        if let Some(id) = &sandbox_id {
            self.get(tenant, id).await?;
        }
        let cursor = Cursor {
            store: self.store().clone(),
            query: EventQuery {
                tenant: Some(tenant.to_owned()),
                sandbox_id,
                after_revision,
                limit: EVENT_BATCH,
            },
            buffered: VecDeque::new(),
            revisions: self.subscribe_revisions(),
            poll_interval: self.config().watch_poll_interval,
            ended: false,
        };
        Ok(futures::stream::unfold(cursor, next_event))
    }
}

async fn next_event(mut cursor: Cursor) -> Option<(Result<SandboxEvent>, Cursor)> {
    loop {
        if let Some(event) = cursor.buffered.pop_front() {
            cursor.query.after_revision = event.revision;
            return Some((Ok(event), cursor));
        }
        if cursor.ended {
            return None;
        }
        // Mark the latest revision as seen before reading, so that a write
        // landing after the read wakes the wait below.
        cursor.revisions.borrow_and_update();
        match cursor.store.list_events(&cursor.query).await {
            Err(error) => {
                cursor.ended = true;
                return Some((Err(error), cursor));
            }
            Ok(events) if !events.is_empty() => cursor.buffered.extend(events),
            Ok(_) => {
                tokio::select! {
                    changed = cursor.revisions.changed() => {
                        if changed.is_err() {
                            // The manager is gone; keep polling the store.
                            tokio::time::sleep(cursor.poll_interval).await;
                        }
                    }
                    () = tokio::time::sleep(cursor.poll_interval) => {}
                }
            }
        }
    }
}
