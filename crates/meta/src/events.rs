//! The event log: a transactional outbox of domain events, durable consumer cursors, and the
//! webhook subscriptions and deliveries that the first consumer keeps.
//!
//! **Appending.** Every write that changes what a registry holds (a manifest put that stores an
//! image or moves a tag, a manifest or tag delete, a repository created or deleted, a policy or
//! mutability change) appends its events in the transaction that makes the change
//! (`append_event`, used by the store's own write methods): the change and its events commit or
//! roll back together. Nothing outside this crate appends.
//!
//! **Reading.** [`EventStore::events_after`] returns the events after a [`Cursor`] in log order,
//! and only events behind which no other event can still appear: on SQLite writers are
//! serialized, so sequence order is commit order; on PostgreSQL sequence numbers are handed out
//! before commit, so each event records its transaction id and readers take only events of
//! transactions older than every transaction still running. A consumer that has handled
//! everything up to a cursor never misses an event by moving past it.
//!
//! **Consuming.** A consumer moves its durable cursor with [`EventStore::advance_event_cursor`],
//! a compare-and-set that also inserts the consumer's own work rows (webhook deliveries) in the
//! same transaction, so each event's work is recorded exactly once even if two nodes race.

use crate::Result;
use async_trait::async_trait;

/// Event kinds. `image.*` events carry ECR's "ECR Image Action" detail as their detail.
pub mod kind {
    /// An image was stored, or a tag was pointed at an image.
    pub const IMAGE_PUSH: &str = "image.push";
    /// A tag was removed, or an image and its tags were deleted.
    pub const IMAGE_DELETE: &str = "image.delete";
    /// A repository was created (explicitly or by a push with create-on-push).
    pub const REPOSITORY_CREATE: &str = "repository.create";
    /// A repository was deleted (with `force`, its images with it).
    pub const REPOSITORY_DELETE: &str = "repository.delete";
    /// A repository's tag mutability settings changed.
    pub const REPOSITORY_MUTABILITY: &str = "repository.mutability";
    /// A repository policy was set or deleted.
    pub const REPOSITORY_POLICY: &str = "repository.policy";
    /// A registry policy was set or deleted.
    pub const REGISTRY_POLICY: &str = "registry.policy";
    /// A lifecycle policy rule expired an image (the image's deletion events come with it).
    pub const LIFECYCLE_ACTION: &str = "lifecycle.action";
    /// A scan of an image finished (detail: ECR's "ECR Image Scan" detail).
    pub const IMAGE_SCAN: &str = "image.scan";
}

/// The image an "ECR Image Action" event is about.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ImageRef<'a> {
    pub repository: &'a str,
    pub digest: &'a str,
    pub media_type: Option<&'a str>,
    /// The config media type of an image, or the artifact type of an artifact.
    pub artifact_media_type: Option<&'a str>,
}

impl ImageRef<'_> {
    /// ECR's "ECR Image Action" detail for `action` (`PUSH` or `DELETE`), with `image-tag`
    /// when the action concerned a tag.
    pub(crate) fn action(&self, action: &str, tag: Option<&str>) -> serde_json::Value {
        let mut d = serde_json::json!({
            "result": "SUCCESS",
            "repository-name": self.repository,
            "image-digest": self.digest,
            "action-type": action,
        });
        if let Some(t) = tag {
            d["image-tag"] = t.into();
        }
        if let Some(m) = self.media_type {
            d["manifest-media-type"] = m.into();
        }
        if let Some(a) = self.artifact_media_type {
            d["artifact-media-type"] = a.into();
        }
        d
    }
}

/// Field of an image push's detail (`true`) when replication wrote the image: such pushes are
/// not replicated again, and the field is not published.
pub const REPLICATED: &str = "berth-replicated";

/// A position in the event log: everything at or before it. [`Cursor::default`] is the start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    /// The writing transaction's id (PostgreSQL); 0 on SQLite.
    pub txid: i64,
    pub seq: i64,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub seq: i64,
    pub txid: i64,
    /// Globally unique id (a UUID), stable across retries and nodes.
    pub id: String,
    pub account_id: String,
    pub region: String,
    /// One of [`kind`].
    pub kind: String,
    /// The repository the event is about, if any.
    pub repository: Option<String>,
    /// JSON object text.
    pub detail: String,
    /// Commit-side time of the change (epoch ms).
    pub created_at: i64,
}

impl Event {
    /// The cursor that stands at this event.
    pub fn cursor(&self) -> Cursor {
        Cursor { txid: self.txid, seq: self.seq }
    }
}

/// A webhook subscription to create.
#[derive(Debug, Clone)]
pub struct NewWebhook<'a> {
    pub id: &'a str,
    pub account_id: &'a str,
    pub url: &'a str,
    /// JSON array of detail-types, or `["all"]`.
    pub events: &'a str,
    /// Only events of repositories whose name starts with this.
    pub repository_filter: Option<&'a str>,
    /// The signing secret, sealed under the server key.
    pub secret_enc: &'a str,
}

/// A webhook subscription with its delivery counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: String,
    pub account_id: String,
    pub url: String,
    /// JSON array of detail-types, or `["all"]`.
    pub events: String,
    pub repository_filter: Option<String>,
    pub secret_enc: String,
    pub created_at: i64,
    /// Deliveries waiting (including the one being retried).
    pub pending: u64,
    pub delivered: u64,
    /// Deliveries that used up their attempts (the dead-letter state).
    pub dead: u64,
    /// The last failure of any delivery, if any.
    pub last_error: Option<String>,
}

/// A delivery to record when a consumer moves its cursor.
#[derive(Debug, Clone)]
pub struct NewDelivery<'a> {
    pub webhook_id: &'a str,
    pub event_id: &'a str,
    /// The exact bytes to POST (every attempt sends the same).
    pub body: &'a str,
}

/// A webhook delivery waiting to be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: i64,
    pub webhook_id: String,
    pub event_id: String,
    pub body: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// Not attempted before this time (epoch ms).
    pub next_attempt_at: i64,
}

/// The outcome of one delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome<'a> {
    /// The receiver answered 2xx.
    Delivered { status: u16 },
    /// Failed; try again at `at`.
    Retry { at: i64, status: Option<u16>, error: &'a str },
    /// Failed on its last allowed attempt: dead-lettered.
    Dead { status: Option<u16>, error: &'a str },
}

/// The event log, its consumer cursors and webhook state.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Events after `cursor` in log order, at most `limit`, only those behind which no other
    /// event can still appear (see the module documentation).
    async fn events_after(&self, cursor: Cursor, limit: u32) -> Result<Vec<Event>>;
    /// How many readable events lie after `cursor`, counted up to `cap`.
    async fn events_pending(&self, cursor: Cursor, cap: u32) -> Result<u64>;
    /// A consumer's cursor; a consumer seen for the first time starts at the beginning.
    async fn event_cursor(&self, consumer: &str) -> Result<Cursor>;
    /// Move `consumer` from `from` to `to` and record `deliveries` (a delivery already recorded
    /// for the same webhook and event is skipped), in one transaction. `false`, and nothing
    /// changed, when the stored cursor is not `from` (another node moved it).
    async fn advance_event_cursor(
        &self,
        consumer: &str,
        from: Cursor,
        to: Cursor,
        deliveries: &[NewDelivery<'_>],
        now: i64,
    ) -> Result<bool>;
    /// Delete events created before `before` that every consumer has passed, and finished
    /// (delivered or dead) webhook deliveries last updated before `before`. Returns the events
    /// deleted.
    async fn purge_events(&self, before: i64) -> Result<u64>;

    /// Store a webhook subscription.
    async fn create_webhook(&self, w: &NewWebhook<'_>, now: i64) -> Result<()>;
    /// Webhooks (of one account when given), oldest first, with their delivery counts.
    async fn webhooks(&self, account_id: Option<&str>) -> Result<Vec<Webhook>>;
    /// Every webhook, oldest first, without reading its deliveries (`pending`, `delivered`,
    /// `dead` are 0 and `last_error` is `None`): what the consumer needs on every round, at a
    /// cost that does not grow with the delivery history.
    async fn webhook_subscriptions(&self) -> Result<Vec<Webhook>>;
    /// Delete a webhook of an account and its deliveries; `false` when absent.
    async fn delete_webhook(&self, account_id: &str, id: &str) -> Result<bool>;
    /// Make every dead delivery of a webhook pending again, due now, with fresh attempts;
    /// returns how many.
    async fn redrive_webhook(&self, account_id: &str, id: &str, now: i64) -> Result<u64>;
    /// Take (or renew) the delivery lease of a webhook for `node` until `now + lease_ms`;
    /// `false` while another node holds it.
    async fn lease_webhook(&self, id: &str, node: &str, now: i64, lease_ms: i64) -> Result<bool>;
    /// Give a webhook's delivery lease back.
    async fn release_webhook(&self, id: &str, node: &str) -> Result<()>;
    /// The oldest pending deliveries of a webhook, oldest first, at most `limit`: only the first
    /// may have been attempted (it is retried until it is delivered or dead), the others wait
    /// behind it in order.
    async fn next_deliveries(&self, webhook_id: &str, limit: u32) -> Result<Vec<Delivery>>;
    /// Ids of webhooks whose oldest pending delivery is due at `now`.
    async fn webhooks_due(&self, now: i64) -> Result<Vec<String>>;
    /// Record an attempt's outcome.
    async fn record_delivery(&self, id: i64, outcome: DeliveryOutcome<'_>, now: i64) -> Result<()>;
    /// Record successful attempts (delivery id, HTTP status) in one transaction.
    async fn record_delivered(&self, delivered: &[(i64, u16)], now: i64) -> Result<()>;
}

/// Implement [`EventStore`] for `$store` on database `$db` with row type `$row`; `$visible` is the
/// SQL condition on `events` rows that holds for events no running transaction can precede, and
/// define `append_event`, which the store's write methods call inside their transactions.
macro_rules! portable_events {
    ($store:ty, $db:ty, $row:ty, $visible:literal) => {
        /// Append one event in `tx` (see [`crate::events`]).
        #[allow(clippy::too_many_arguments)]
        async fn append_event(
            tx: &mut Transaction<'static, $db>,
            account_id: &str,
            region: &str,
            kind: &str,
            repository: Option<&str>,
            detail: &serde_json::Value,
            now: i64,
        ) -> Result<()> {
            sqlx::query(
                "INSERT INTO events (event_id, account_id, region, kind, repository, detail, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(account_id)
            .bind(region)
            .bind(kind)
            .bind(repository)
            .bind(detail.to_string())
            .bind(now)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        fn event_row(r: $row) -> crate::events::Event {
            crate::events::Event {
                seq: r.get(0),
                txid: r.get(1),
                id: r.get(2),
                account_id: r.get(3),
                region: r.get(4),
                kind: r.get(5),
                repository: r.get(6),
                detail: r.get(7),
                created_at: r.get(8),
            }
        }

        fn delivery_row(r: $row) -> crate::events::Delivery {
            crate::events::Delivery {
                id: r.get(0),
                webhook_id: r.get(1),
                event_id: r.get(2),
                body: r.get(3),
                attempts: r.get::<i64, _>(4) as u32,
                next_attempt_at: r.get(5),
            }
        }

        impl $store {
            /// The events after a cursor (`$1` txid, `$2` seq), at most `$3`: two index ranges of
            /// `events_order` (the rest of the cursor's transaction, then later transactions).
            /// Neither `txid > $1 OR (txid = $1 AND seq > $2)` nor the row value `(txid, seq) >
            /// ($1, $2)` is one range on SQLite (where every txid is 0): both walked the whole
            /// index on every consumer poll, ~10 ms per 100 ms at 100,000 events.
            pub(crate) const EVENTS_AFTER_SQL: &'static str = concat!(
                "SELECT seq, txid, event_id, account_id, region, kind, repository, detail, created_at FROM (",
                "SELECT * FROM (SELECT seq, txid, event_id, account_id, region, kind, repository, detail, created_at ",
                "FROM events WHERE txid = $1 AND seq > $2 AND ",
                $visible,
                " ORDER BY seq LIMIT $3) AS same_tx UNION ALL ",
                "SELECT * FROM (SELECT seq, txid, event_id, account_id, region, kind, repository, detail, created_at ",
                "FROM events WHERE txid > $1 AND ",
                $visible,
                " ORDER BY txid, seq LIMIT $3) AS later_tx",
                ") AS e ORDER BY txid, seq LIMIT $3"
            );

            /// How many events follow a cursor, counting at most `$3` in each of the two ranges
            /// of [`Self::EVENTS_AFTER_SQL`].
            pub(crate) const EVENTS_PENDING_SQL: &'static str = concat!(
                "SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE txid = $1 AND seq > $2 AND ",
                $visible,
                " LIMIT $3) AS same_tx) + (SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE txid > $1 AND ",
                $visible,
                " LIMIT $3) AS later_tx)"
            );
        }

        #[async_trait]
        impl crate::events::EventStore for $store {
            async fn events_after(&self, c: crate::events::Cursor, limit: u32) -> Result<Vec<crate::events::Event>> {
                let rows = sqlx::query(Self::EVENTS_AFTER_SQL)
                .bind(c.txid)
                .bind(c.seq)
                .bind(limit as i64)
                .fetch_all(&self.read)
                .await?;
                Ok(rows.into_iter().map(event_row).collect())
            }

            async fn events_pending(&self, c: crate::events::Cursor, cap: u32) -> Result<u64> {
                let n: i64 = sqlx::query(Self::EVENTS_PENDING_SQL)
                .bind(c.txid)
                .bind(c.seq)
                .bind(cap as i64)
                .fetch_one(&self.read)
                .await?
                .get(0);
                Ok((n.max(0) as u64).min(u64::from(cap)))
            }

            async fn event_cursor(&self, consumer: &str) -> Result<crate::events::Cursor> {
                let row = sqlx::query("SELECT txid, seq FROM event_cursors WHERE consumer = $1")
                    .bind(consumer)
                    .fetch_optional(&self.read)
                    .await?;
                Ok(row
                    .map(|r| crate::events::Cursor { txid: r.get(0), seq: r.get(1) })
                    .unwrap_or_default())
            }

            async fn advance_event_cursor(
                &self,
                consumer: &str,
                from: crate::events::Cursor,
                to: crate::events::Cursor,
                deliveries: &[crate::events::NewDelivery<'_>],
                now: i64,
            ) -> Result<bool> {
                let mut tx = self.begin().await?;
                // A first move creates the row at the start; the update below is the CAS.
                sqlx::query(
                    "INSERT INTO event_cursors (consumer, txid, seq, updated_at) VALUES ($1, 0, 0, $2) \
                     ON CONFLICT (consumer) DO NOTHING",
                )
                .bind(consumer)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let moved = sqlx::query(
                    "UPDATE event_cursors SET txid = $1, seq = $2, updated_at = $3 \
                     WHERE consumer = $4 AND txid = $5 AND seq = $6",
                )
                .bind(to.txid)
                .bind(to.seq)
                .bind(now)
                .bind(consumer)
                .bind(from.txid)
                .bind(from.seq)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if moved == 0 {
                    return Ok(false);
                }
                for d in deliveries {
                    sqlx::query(
                        "INSERT INTO webhook_deliveries (webhook_id, event_id, body, state, attempts, next_attempt_at, \
                         created_at, updated_at) \
                         SELECT $1, $2, $3, 'pending', 0, $4, $4, $4 WHERE EXISTS (SELECT 1 FROM webhooks WHERE id = $1) \
                         ON CONFLICT (webhook_id, event_id) DO NOTHING",
                    )
                    .bind(d.webhook_id)
                    .bind(d.event_id)
                    .bind(d.body)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn purge_events(&self, before: i64) -> Result<u64> {
                let mut tx = self.begin().await?;
                let n = sqlx::query(
                    "DELETE FROM events WHERE created_at < $1 AND NOT EXISTS (SELECT 1 FROM event_cursors c \
                     WHERE (events.txid, events.seq) > (c.txid, c.seq))",
                )
                .bind(before)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                sqlx::query("DELETE FROM webhook_deliveries WHERE state IN ('delivered', 'dead') AND updated_at < $1")
                    .bind(before)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(n)
            }

            async fn create_webhook(&self, w: &crate::events::NewWebhook<'_>, now: i64) -> Result<()> {
                sqlx::query(
                    "INSERT INTO webhooks (id, account_id, url, events, repository_filter, secret_enc, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(w.id)
                .bind(w.account_id)
                .bind(w.url)
                .bind(w.events)
                .bind(w.repository_filter)
                .bind(w.secret_enc)
                .bind(now)
                .execute(&self.write)
                .await?;
                Ok(())
            }

            async fn webhook_subscriptions(&self) -> Result<Vec<crate::events::Webhook>> {
                let rows = sqlx::query(
                    "SELECT id, account_id, url, events, repository_filter, secret_enc, created_at \
                     FROM webhooks ORDER BY created_at, id",
                )
                .fetch_all(&self.read)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|r| crate::events::Webhook {
                        id: r.get(0),
                        account_id: r.get(1),
                        url: r.get(2),
                        events: r.get(3),
                        repository_filter: r.get(4),
                        secret_enc: r.get(5),
                        created_at: r.get(6),
                        pending: 0,
                        delivered: 0,
                        dead: 0,
                        last_error: None,
                    })
                    .collect())
            }

            async fn webhooks(&self, account_id: Option<&str>) -> Result<Vec<crate::events::Webhook>> {
                let rows = sqlx::query(
                    "SELECT w.id, w.account_id, w.url, w.events, w.repository_filter, w.secret_enc, w.created_at, \
                     (SELECT COUNT(*) FROM webhook_deliveries d WHERE d.webhook_id = w.id AND d.state = 'pending'), \
                     (SELECT COUNT(*) FROM webhook_deliveries d WHERE d.webhook_id = w.id AND d.state = 'delivered'), \
                     (SELECT COUNT(*) FROM webhook_deliveries d WHERE d.webhook_id = w.id AND d.state = 'dead'), \
                     (SELECT d.last_error FROM webhook_deliveries d WHERE d.webhook_id = w.id \
                      AND d.last_error IS NOT NULL ORDER BY d.updated_at DESC, d.id DESC LIMIT 1) \
                     FROM webhooks w WHERE ($1 = '' OR w.account_id = $1) ORDER BY w.created_at, w.id",
                )
                .bind(account_id.unwrap_or(""))
                .fetch_all(&self.read)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|r| crate::events::Webhook {
                        id: r.get(0),
                        account_id: r.get(1),
                        url: r.get(2),
                        events: r.get(3),
                        repository_filter: r.get(4),
                        secret_enc: r.get(5),
                        created_at: r.get(6),
                        pending: r.get::<i64, _>(7) as u64,
                        delivered: r.get::<i64, _>(8) as u64,
                        dead: r.get::<i64, _>(9) as u64,
                        last_error: r.get(10),
                    })
                    .collect())
            }

            async fn delete_webhook(&self, account_id: &str, id: &str) -> Result<bool> {
                // Its deliveries go with it (ON DELETE CASCADE).
                let n = sqlx::query("DELETE FROM webhooks WHERE id = $1 AND account_id = $2")
                    .bind(id)
                    .bind(account_id)
                    .execute(&self.write)
                    .await?
                    .rows_affected();
                Ok(n > 0)
            }

            async fn redrive_webhook(&self, account_id: &str, id: &str, now: i64) -> Result<u64> {
                let n = sqlx::query(
                    "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_attempt_at = $1, updated_at = $1 \
                     WHERE webhook_id = $2 AND state = 'dead' \
                     AND EXISTS (SELECT 1 FROM webhooks w WHERE w.id = $2 AND w.account_id = $3)",
                )
                .bind(now)
                .bind(id)
                .bind(account_id)
                .execute(&self.write)
                .await?
                .rows_affected();
                Ok(n)
            }

            async fn lease_webhook(&self, id: &str, node: &str, now: i64, lease_ms: i64) -> Result<bool> {
                let n = sqlx::query(
                    "UPDATE webhooks SET lease_owner = $1, lease_until = $2 \
                     WHERE id = $3 AND (lease_owner IS NULL OR lease_owner = $1 OR lease_until < $4)",
                )
                .bind(node)
                .bind(now + lease_ms)
                .bind(id)
                .bind(now)
                .execute(&self.write)
                .await?
                .rows_affected();
                Ok(n > 0)
            }

            async fn release_webhook(&self, id: &str, node: &str) -> Result<()> {
                sqlx::query("UPDATE webhooks SET lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2")
                    .bind(id)
                    .bind(node)
                    .execute(&self.write)
                    .await?;
                Ok(())
            }

            async fn next_deliveries(&self, webhook_id: &str, limit: u32) -> Result<Vec<crate::events::Delivery>> {
                let rows = sqlx::query(
                    "SELECT id, webhook_id, event_id, body, attempts, next_attempt_at FROM webhook_deliveries \
                     WHERE webhook_id = $1 AND state = 'pending' ORDER BY id LIMIT $2",
                )
                .bind(webhook_id)
                .bind(i64::from(limit))
                .fetch_all(&self.read)
                .await?;
                Ok(rows.into_iter().map(delivery_row).collect())
            }

            async fn record_delivered(&self, delivered: &[(i64, u16)], now: i64) -> Result<()> {
                if delivered.is_empty() {
                    return Ok(());
                }
                let mut tx = self.begin().await?;
                for (id, status) in delivered {
                    sqlx::query(
                        "UPDATE webhook_deliveries SET state = 'delivered', attempts = attempts + 1, \
                         next_attempt_at = $1, last_status = $2, updated_at = $1 WHERE id = $3 AND state = 'pending'",
                    )
                    .bind(now)
                    .bind(i64::from(*status))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn webhooks_due(&self, now: i64) -> Result<Vec<String>> {
                let rows = sqlx::query(
                    "SELECT d.webhook_id FROM webhook_deliveries d WHERE d.state = 'pending' AND d.next_attempt_at <= $1 \
                     AND d.id = (SELECT MIN(e.id) FROM webhook_deliveries e WHERE e.webhook_id = d.webhook_id \
                     AND e.state = 'pending') ORDER BY d.webhook_id",
                )
                .bind(now)
                .fetch_all(&self.read)
                .await?;
                Ok(rows.into_iter().map(|r| r.get(0)).collect())
            }

            async fn record_delivery(
                &self,
                id: i64,
                outcome: crate::events::DeliveryOutcome<'_>,
                now: i64,
            ) -> Result<()> {
                use crate::events::DeliveryOutcome as O;
                let (state, at, status, error) = match outcome {
                    O::Delivered { status } => ("delivered", now, Some(status), None),
                    O::Retry { at, status, error } => ("pending", at, status, Some(error)),
                    O::Dead { status, error } => ("dead", now, status, Some(error)),
                };
                sqlx::query(
                    "UPDATE webhook_deliveries SET state = $1, attempts = attempts + 1, next_attempt_at = $2, \
                     last_status = $3, last_error = COALESCE($4, last_error), updated_at = $5 \
                     WHERE id = $6 AND state = 'pending'",
                )
                .bind(state)
                .bind(at)
                .bind(status.map(i64::from))
                .bind(error)
                .bind(now)
                .bind(id)
                .execute(&self.write)
                .await?;
                Ok(())
            }
        }
    };
}

pub(crate) use portable_events;
