//! Webhooks: the first consumer of the event log.
//!
//! **Fan-out.** The consumer [`CONSUMER`] reads events after its cursor, renders each published
//! event once (the EventBridge envelope, [`crate::envelope`]) and records one delivery per
//! matching webhook, in the same transaction that moves its cursor (a compare-and-set), so every
//! event becomes exactly one delivery per webhook even when two nodes race.
//!
//! **Delivery.** Per webhook, the oldest pending delivery is the only one attempted (per-endpoint
//! order), by the node that holds the webhook's lease. A 2xx answer delivers it; anything else
//! (another status, a refused connection, a timeout) schedules a retry with exponential backoff
//! until `max_attempts` is used up, when the delivery is dead-lettered (visible in
//! `list-webhooks`; `redrive-webhook` makes them pending again) and the next one goes.
//!
//! **Guarantee.** At least once: a delivery is marked delivered only after the receiver
//! answered 2xx, so a crash between the answer and the mark (or a lost lease) repeats it.
//! Receivers dedupe by the `id` field (also in the `berth-event-id` header). Each POST is signed
//! ([`crate::sign`]) with the webhook's secret and the time of sending.

use crate::Subscription;
use berth_meta::MetadataStore;
use berth_meta::events::{Cursor, Delivery, DeliveryOutcome, NewDelivery, NewWebhook};
use berth_registry::jobs::JobRunner;
use berth_registry::{Clock, Keys};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The event-log consumer name of the webhook fan-out.
pub const CONSUMER: &str = "webhooks";
/// The job kind that runs fan-out and delivery (one node at a time, per period).
pub const JOB: &str = "deliver-events";
/// The job kind that purges old events and finished deliveries.
pub const PURGE_JOB: &str = "purge-events";
/// Events read per fan-out step.
const BATCH: u32 = 500;
/// Deliveries of one webhook attempted in a run (recorded together).
const RUN: u32 = 100;

/// Webhook failures, for the admin commands and the consumer's log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    #[error("no webhook '{0}' in this account")]
    NotFound(String),
    #[error("metadata: {0}")]
    Meta(#[from] berth_meta::MetaError),
}

/// How webhooks are delivered.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Attempts per delivery before it is dead-lettered (at least 1).
    pub max_attempts: u32,
    /// Delay after the first failed attempt; doubles with each further one.
    pub backoff_base: Duration,
    /// Upper bound of the retry delay.
    pub backoff_max: Duration,
    /// Per-attempt timeout (connect + answer).
    pub timeout: Duration,
    /// How long a node holds a webhook for delivery unless it renews.
    pub lease: Duration,
    /// How often the consumer looks for new events and due deliveries when idle.
    pub poll: Duration,
    /// Webhooks delivered to at once.
    pub concurrency: usize,
}

impl Default for Settings {
    /// 10 attempts, backoff from 1 s to 10 min (about 25 minutes in all), 10 s per attempt.
    fn default() -> Settings {
        Settings {
            max_attempts: 10,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(600),
            timeout: Duration::from_secs(10),
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(100),
            concurrency: 8,
        }
    }
}

impl Settings {
    /// Delay before the attempt after failed attempt number `attempts` (1-based).
    pub fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1u32 << attempts.saturating_sub(1).min(20);
        self.backoff_base.saturating_mul(factor).min(self.backoff_max)
    }
}

/// A webhook as created: the secret is shown this once.
#[derive(Debug, Clone)]
pub struct Created {
    pub id: String,
    pub secret: String,
}

/// Check and store a webhook of `account_id`: `url` is `http(s)://host...`, `events` is `all` or
/// a comma-separated list of detail types. Returns its id and the newly generated signing secret.
pub async fn create(
    meta: &dyn MetadataStore,
    keys: &Keys,
    account_id: &str,
    url: &str,
    events: &str,
    repository_filter: Option<&str>,
    now: i64,
) -> Result<Created, Error> {
    let parsed = reqwest::Url::parse(url).map_err(|e| Error::Invalid(format!("invalid --url '{url}': {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(Error::Invalid(format!("invalid --url '{url}': must be http:// or https:// with a host")));
    }
    if url.len() > 2048 {
        return Err(Error::Invalid("--url is longer than 2048 characters".into()));
    }
    let detail_types = Subscription::parse_events(events).map_err(Error::Invalid)?;
    if let Some(f) = repository_filter
        && (f.is_empty() || f.len() > 256 || f.chars().any(char::is_control))
    {
        return Err(Error::Invalid("--repository-filter must be 1 to 256 printable characters".into()));
    }
    let sub = Subscription { detail_types, repository_filter: repository_filter.map(str::to_string) };
    let id = format!("wh-{}", uuid::Uuid::new_v4().simple());
    let mut raw = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
        .map_err(|_| Error::Invalid("no randomness for the webhook secret".into()))?;
    let secret = format!("whsec_{}", hex::encode(raw));
    let sealed = keys
        .webhook_secrets()
        .seal(secret.as_bytes(), id.as_bytes())
        .map_err(|e| Error::Invalid(format!("sealing the secret: {e}")))?;
    let new =
        NewWebhook { id: &id, account_id, url, events: &sub.events_json(), repository_filter, secret_enc: &sealed };
    meta.create_webhook(&new, now).await?;
    Ok(Created { id, secret })
}

/// The webhooks of an account as `list-webhooks` prints them (no secrets).
pub async fn list(meta: &dyn MetadataStore, account_id: &str) -> Result<Value, Error> {
    let hooks = meta.webhooks(Some(account_id)).await?;
    Ok(Value::Array(
        hooks
            .iter()
            .map(|w| {
                let sub = Subscription::from_stored(&w.events, w.repository_filter.as_deref());
                json!({
                    "WebhookId": w.id,
                    "Url": w.url,
                    "Events": if sub.detail_types.is_empty() { json!(["all"]) } else { json!(sub.detail_types) },
                    "RepositoryFilter": w.repository_filter,
                    "CreatedAt": berth_registry::iso8601(w.created_at),
                    "Pending": w.pending,
                    "Delivered": w.delivered,
                    "DeadLettered": w.dead,
                    "LastError": w.last_error,
                })
            })
            .collect(),
    ))
}

/// Delete a webhook of an account (and its undelivered deliveries).
pub async fn delete(meta: &dyn MetadataStore, account_id: &str, id: &str) -> Result<(), Error> {
    if meta.delete_webhook(account_id, id).await? { Ok(()) } else { Err(Error::NotFound(id.to_string())) }
}

/// Make a webhook's dead-lettered deliveries pending again; returns how many.
pub async fn redrive(meta: &dyn MetadataStore, account_id: &str, id: &str, now: i64) -> Result<u64, Error> {
    if !meta.webhooks(Some(account_id)).await?.iter().any(|w| w.id == id) {
        return Err(Error::NotFound(id.to_string()));
    }
    Ok(meta.redrive_webhook(account_id, id, now).await?)
}

/// Fans events out to webhooks and delivers them (see the module documentation).
pub struct Dispatcher {
    meta: Arc<dyn MetadataStore>,
    keys: Arc<Keys>,
    clock: Arc<dyn Clock>,
    client: reqwest::Client,
    settings: Settings,
    node_id: String,
    stop: watch::Receiver<bool>,
}

impl Dispatcher {
    /// A dispatcher for node `node_id` that stops working when `stop` turns true.
    pub fn new(
        meta: Arc<dyn MetadataStore>,
        keys: Arc<Keys>,
        clock: Arc<dyn Clock>,
        settings: Settings,
        node_id: String,
        stop: watch::Receiver<bool>,
    ) -> Dispatcher {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Berth-Webhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("an HTTP client with static settings");
        Dispatcher { meta, keys, clock, client, settings, node_id, stop }
    }

    /// Register the consumer job (one run per `period`, which keeps working until the period
    /// ends, so one node consumes at a time and another takes over within a lease when it dies)
    /// and the retention job (hourly: events older than `retention` that every consumer has
    /// passed, and finished deliveries).
    pub fn register(self: Arc<Self>, runner: &mut JobRunner, period: Duration) {
        let me = self.clone();
        runner.handle(JOB, move |job| {
            let me = me.clone();
            async move {
                let until = job.run_after + period.as_millis() as i64;
                me.run_until(until).await;
                Ok(())
            }
        });
        runner.every(JOB, period, 1_000);
    }

    /// Register the hourly retention job: events older than `retention` that every consumer
    /// has passed, and finished deliveries.
    pub fn register_retention(runner: &mut JobRunner, retention: Duration) {
        runner.purge_hourly(
            PURGE_JOB,
            "events",
            retention,
            |meta, before| async move { meta.purge_events(before).await },
        );
    }

    /// Fan out and deliver until `until` (epoch ms) or the stop signal.
    pub async fn run_until(&self, until: i64) {
        let mut stop = self.stop.clone();
        let mut failures = 0u32;
        while self.clock.now_ms() < until && !*stop.borrow() {
            let busy = match self.step().await {
                Ok(busy) => {
                    failures = 0;
                    busy
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, "event consumer step failed; retrying");
                    false
                }
            };
            if busy {
                continue;
            }
            let idle = self.settings.poll.saturating_mul(1 << failures.min(6));
            let left = Duration::from_millis((until - self.clock.now_ms()).max(0) as u64);
            tokio::select! {
                _ = tokio::time::sleep(idle.min(left)) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
    }

    /// One round: fan out a batch of events, then deliver what is due. `true` when more work
    /// is waiting (a full batch of events was read), so the caller goes again at once;
    /// otherwise it waits for the poll interval, which lets the events of a busy moment
    /// gather and be fanned out and delivered in a few transactions instead of one each.
    pub async fn step(&self) -> Result<bool, Error> {
        let fanned = self.fan_out().await?;
        self.deliver_due().await?;
        Ok(fanned >= BATCH as usize)
    }

    /// Read up to one batch of events after the consumer's cursor and record their deliveries
    /// while moving the cursor; returns the events consumed (0 when none, or another node moved
    /// the cursor first).
    pub async fn fan_out(&self) -> Result<usize, Error> {
        let from = self.meta.event_cursor(CONSUMER).await?;
        let events = self.meta.events_after(from, BATCH).await?;
        let lag = self.meta.events_pending(from, 100_000).await.unwrap_or(0);
        metrics::gauge!("berth_event_log_lag_events", "consumer" => CONSUMER).set(lag as f64);
        let Some(last) = events.last() else { return Ok(0) };
        let to: Cursor = last.cursor();
        let hooks = if events.iter().any(|e| crate::detail_type(&e.kind).is_some()) {
            self.meta.webhook_subscriptions().await?
        } else {
            Vec::new()
        };
        let mut bodies: Vec<(String, String, String)> = Vec::new(); // (webhook, event, body)
        for e in &events {
            let Some(envelope) = crate::envelope(e) else { continue };
            let body = envelope.to_string();
            for w in &hooks {
                // A webhook receives the events of its account committed after it was created.
                let sub = Subscription::from_stored(&w.events, w.repository_filter.as_deref());
                if w.account_id == e.account_id && e.created_at >= w.created_at && sub.matches(e) {
                    bodies.push((w.id.clone(), e.id.clone(), body.clone()));
                }
            }
        }
        let deliveries: Vec<NewDelivery> =
            bodies.iter().map(|(w, e, b)| NewDelivery { webhook_id: w, event_id: e, body: b }).collect();
        let now = self.clock.now_ms();
        if !self.meta.advance_event_cursor(CONSUMER, from, to, &deliveries, now).await? {
            return Ok(0);
        }
        Ok(events.len())
    }

    /// Deliver the due head deliveries of every webhook (several webhooks at once, each in
    /// order); returns how many attempts were made.
    pub async fn deliver_due(&self) -> Result<usize, Error> {
        let due = self.meta.webhooks_due(self.clock.now_ms()).await?;
        let mut attempts = 0;
        for chunk in due.chunks(self.settings.concurrency.max(1)) {
            let runs = chunk.iter().map(|id| self.deliver_webhook(id));
            for r in futures::future::join_all(runs).await {
                attempts += r?;
            }
        }
        Ok(attempts)
    }

    /// Deliver one webhook's due deliveries in order while holding its lease. Successes are
    /// recorded together after each run of attempts (one transaction), a failure at once (and
    /// it stops the run: the next attempt waits for its backoff), so a crash between an answer
    /// and its record repeats at most one run (at least once).
    async fn deliver_webhook(&self, id: &str) -> Result<usize, Error> {
        let lease_ms = self.settings.lease.as_millis() as i64;
        let mut attempts = 0;
        let Some(hook) = self.meta.webhook_subscriptions().await?.into_iter().find(|w| w.id == id) else {
            return Ok(0);
        };
        let secret = match self.keys.webhook_secrets().open(&hook.secret_enc, hook.id.as_bytes()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(webhook = id, error = %e, "cannot unseal the webhook secret (was the server key changed?)");
                return Ok(0);
            }
        };
        let mut lease_until = 0i64;
        'runs: loop {
            let now = self.clock.now_ms();
            // Renew the lease once half of it is gone (not on every delivery: each renewal is a
            // write).
            if lease_until - now < lease_ms / 2 {
                if *self.stop.borrow() || !self.meta.lease_webhook(id, &self.node_id, now, lease_ms).await? {
                    break;
                }
                lease_until = now + lease_ms;
            }
            let run = self.meta.next_deliveries(id, RUN).await?;
            if run.first().is_none_or(|d| d.next_attempt_at > now) {
                break;
            }
            let mut delivered: Vec<(i64, u16)> = Vec::new();
            let mut failed = false;
            for d in &run {
                // Stop before the lease could run out under a slow receiver.
                if *self.stop.borrow() || lease_until - self.clock.now_ms() < lease_ms / 4 {
                    break;
                }
                let outcome = self.attempt(&hook.url, &secret, d).await;
                attempts += 1;
                let now = self.clock.now_ms();
                let tried = d.attempts + 1;
                match outcome {
                    Ok(status) => {
                        metrics::counter!("berth_webhook_deliveries_total", "outcome" => "delivered").increment(1);
                        delivered.push((d.id, status));
                    }
                    Err((status, error)) => {
                        self.meta.record_delivered(&delivered, now).await?;
                        delivered.clear();
                        let (label, recorded) = if tried >= self.settings.max_attempts.max(1) {
                            tracing::warn!(
                                webhook = id,
                                event = d.event_id,
                                attempts = tried,
                                error,
                                "webhook delivery dead-lettered"
                            );
                            ("dead", DeliveryOutcome::Dead { status, error: &error })
                        } else {
                            let at = now + self.settings.backoff(tried).as_millis() as i64;
                            tracing::debug!(
                                webhook = id,
                                event = d.event_id,
                                attempts = tried,
                                error,
                                "webhook delivery failed; will retry"
                            );
                            ("retry", DeliveryOutcome::Retry { at, status, error: &error })
                        };
                        metrics::counter!("berth_webhook_deliveries_total", "outcome" => label).increment(1);
                        self.meta.record_delivery(d.id, recorded, now).await?;
                        failed = label == "retry";
                        break;
                    }
                }
            }
            self.meta.record_delivered(&delivered, self.clock.now_ms()).await?;
            if failed || *self.stop.borrow() {
                break 'runs;
            }
        }
        self.meta.release_webhook(id, &self.node_id).await?;
        Ok(attempts)
    }

    /// POST one delivery; the status on 2xx, else the status (if any) and what went wrong.
    async fn attempt(&self, url: &str, secret: &[u8], d: &Delivery) -> Result<u16, (Option<u16>, String)> {
        let ts = self.clock.now_ms().div_euclid(1000);
        let sent = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(crate::SIGNATURE_HEADER, crate::sign(secret, ts, d.body.as_bytes()))
            .header("berth-event-id", &d.event_id)
            .header("berth-webhook-id", &d.webhook_id)
            .header("berth-delivery-attempt", (d.attempts + 1).to_string())
            .body(d.body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => Ok(r.status().as_u16()),
            Ok(r) => Err((Some(r.status().as_u16()), format!("HTTP {}", r.status().as_u16()))),
            Err(e) if e.is_timeout() => Err((None, "timed out".into())),
            Err(e) if e.is_connect() => Err((None, "could not connect".into())),
            Err(_) => Err((None, "request failed".into())),
        }
    }
}
