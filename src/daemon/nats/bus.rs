//! The bus: a connection to NATS JetStream and the few things the daemons do on it.
//!
//! - a **work-queue stream** of file notices: a notice is removed when a daemon acknowledges it,
//!   and its id (`Nats-Msg-Id`, the file's fingerprint) makes the server drop a second publish
//!   of it within the stream's duplicate window;
//! - one **durable pull consumer** every daemon pulls from, so work is stolen rather than
//!   assigned: a daemon takes a notice when it is free, and one that dies leaves its notice
//!   unacknowledged, to be delivered again after `ack_wait` (at most `max_deliver` times);
//! - a **key-value bucket**: `claim.<fingerprint>` (created once, so a duplicate outside the
//!   duplicate window is refused too), `failed.<fingerprint>` (why a file was given up) and
//!   `lease` (who rewrites the outputs, renewed by revision compare-and-swap).
//!
//! Only what a 2.9 server has is used (Debian's `nats-server`): no per-key TTL (the lease
//! carries its own expiry), no consumers with several filters.

use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, consumer::PullConsumer, kv, stream};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::NatsSpec;
use crate::daemon::unix_ms;

/// What went wrong talking to the bus. The daemon waits and retries on all of these: a NATS
/// outage delays files, it does not lose them.
#[derive(Debug, thiserror::Error)]
#[error("nats: {what}: {why}")]
pub struct BusError {
    what: &'static str,
    why: String,
}

impl BusError {
    fn new(what: &'static str, e: impl std::fmt::Display) -> Self {
        BusError {
            what,
            why: e.to_string(),
        }
    }
}

/// A file notice: the claim check. The file stays on shared storage; the notice says where it
/// is and what its content is known by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// The reader stage whose paths matched it.
    pub reader: String,
    /// Its path, the same on every daemon (shared storage).
    pub path: String,
    /// `Fingerprint::key`: the notice's message id and its partials' name.
    pub fingerprint: String,
}

/// What publishing a notice came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announced {
    /// A new notice is in the stream.
    Published,
    /// The server dropped it: a notice with this id arrived within the duplicate window.
    Deduped,
    /// The fingerprint's claim says it was published before (outside the window, or by
    /// another daemon watching the same folder): not published again.
    Refused,
}

const LEASE: &str = "lease";
const PUBLISHED: &str = "published";

fn claim_key(fingerprint: &str) -> String {
    format!("claim.{fingerprint}")
}

fn failed_key(fingerprint: &str) -> String {
    format!("failed.{fingerprint}")
}

pub struct Bus {
    js: jetstream::Context,
    consumer: PullConsumer,
    kv: kv::Store,
    subject: String,
}

impl Bus {
    /// Connects and makes sure the stream, the consumer and the bucket exist (each daemon may be
    /// the first; creating what exists with the same settings is a no-op). The client reconnects
    /// by itself after this; a first connection that fails is retried by the caller.
    pub async fn connect(spec: &NatsSpec, name: &str) -> Result<Bus, BusError> {
        let mut opts = async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(Duration::from_secs(5));
        if let Some(c) = &spec.credentials {
            opts = opts
                .credentials_file(c)
                .await
                .map_err(|e| BusError::new("credentials file", format!("{}: {e}", c.display())))?;
        }
        let client = opts
            .connect(spec.urls.clone())
            .await
            .map_err(|e| BusError::new("connect", e))?;
        let js = jetstream::new(client);
        let stream = js
            .get_or_create_stream(stream::Config {
                name: spec.stream.clone(),
                subjects: vec![spec.subject.clone()],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                duplicate_window: spec.duplicate_window,
                num_replicas: spec.replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| BusError::new("stream", e))?;
        let consumer = stream
            .get_or_create_consumer(
                &spec.consumer,
                jetstream::consumer::pull::Config {
                    durable_name: Some(spec.consumer.clone()),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: spec.ack_wait,
                    max_deliver: spec.max_deliver as i64,
                    num_replicas: spec.replicas,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| BusError::new("consumer", e))?;
        // The bucket's stream is made here rather than by the client's `create_key_value`,
        // which first asks for the account's info and cannot read a 2.9 server's reply. It is
        // the layout every client gives a bucket: `KV_<bucket>` over `$KV.<bucket>.>`, one
        // value per key, rollups allowed, deletes only through the bucket, direct gets.
        js.get_or_create_stream(stream::Config {
            name: format!("KV_{}", spec.bucket),
            subjects: vec![format!("$KV.{}.>", spec.bucket)],
            max_messages_per_subject: 1,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: stream::DiscardPolicy::New,
            storage: stream::StorageType::File,
            num_replicas: spec.replicas,
            ..Default::default()
        })
        .await
        .map_err(|e| BusError::new("bucket", e))?;
        let kv = js
            .get_key_value(&spec.bucket)
            .await
            .map_err(|e| BusError::new("bucket", e))?;
        Ok(Bus {
            js,
            consumer,
            kv,
            subject: spec.subject.clone(),
        })
    }

    /// Publishes a notice once per fingerprint. The claim is created first and marked published
    /// after the server's ack: a daemon that dies in between leaves a claim not marked, and the
    /// next one to see the file publishes it (the message id and the partials make that
    /// harmless), so a file is never lost to a half-done publish.
    pub async fn announce(&self, n: &Notice) -> Result<Announced, BusError> {
        let key = claim_key(&n.fingerprint);
        let claim = Bytes::from(format!("claimed {}", n.path));
        match self.kv.create(&key, claim).await {
            Ok(_) => {}
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                let entry = self
                    .kv
                    .entry(key.clone())
                    .await
                    .map_err(|e| BusError::new("claim", e))?;
                if entry.is_some_and(|e| e.value.starts_with(PUBLISHED.as_bytes())) {
                    return Ok(Announced::Refused);
                }
            }
            Err(e) => return Err(BusError::new("claim", e)),
        }
        let payload = serde_json::to_vec(n).map_err(|e| BusError::new("notice", e))?;
        let duplicate = self.publish_raw(&n.fingerprint, payload.into()).await?;
        self.kv
            .put(&key, Bytes::from(format!("{PUBLISHED} {}", n.path)))
            .await
            .map_err(|e| BusError::new("claim", e))?;
        Ok(if duplicate {
            Announced::Deduped
        } else {
            Announced::Published
        })
    }

    /// Publishes a notice's bytes under message id `id`, without a claim; whether the server
    /// took it for a duplicate.
    pub async fn publish_raw(&self, id: &str, payload: Bytes) -> Result<bool, BusError> {
        let ack = self
            .js
            .send_publish(
                self.subject.clone(),
                jetstream::message::PublishMessage::build()
                    .payload(payload)
                    .message_id(id),
            )
            .await
            .map_err(|e| BusError::new("publish", e))?
            .await
            .map_err(|e| BusError::new("publish", e))?;
        Ok(ack.duplicate)
    }

    /// The next notice for this daemon, waiting at most `wait`.
    pub async fn next(&self, wait: Duration) -> Result<Option<jetstream::Message>, BusError> {
        let mut batch = self
            .consumer
            .batch()
            .max_messages(1)
            .expires(wait)
            .messages()
            .await
            .map_err(|e| BusError::new("pull", e))?;
        match batch.next().await {
            None => Ok(None),
            Some(Ok(m)) => Ok(Some(m)),
            Some(Err(e)) => Err(BusError::new("pull", e)),
        }
    }

    /// Notices not yet acknowledged: waiting, and delivered but in flight.
    pub async fn pending(&self) -> Result<u64, BusError> {
        let info = self
            .consumer
            .get_info()
            .await
            .map_err(|e| BusError::new("consumer info", e))?;
        Ok(info.num_pending + info.num_ack_pending as u64)
    }

    /// Records why a file was given up, for operators (`nats kv get BUCKET failed.<fp>`).
    pub async fn record_failed(&self, n: &Notice, reason: &str) -> Result<(), BusError> {
        let v = serde_json::json!({ "path": n.path, "reader": n.reader, "reason": reason });
        self.kv
            .put(failed_key(&n.fingerprint), Bytes::from(v.to_string()))
            .await
            .map(drop)
            .map_err(|e| BusError::new("failed record", e))
    }

    /// Takes or renews the outputs lease for `me` until `lease` from now; whether `me` holds it.
    /// The value is `HOLDER UNTIL_MS`; it is free when absent or past its time, and every change
    /// is a compare-and-swap on the revision read, so two daemons never both take it from one
    /// state of the key. Expiry is by the holders' clocks, so they should be kept in sync (NTP);
    /// a skew only ever gives a stale double refresh, which the pure merge makes harmless.
    pub async fn hold_lease(&self, me: &str, lease: Duration) -> Result<bool, BusError> {
        let now = unix_ms(SystemTime::now());
        let value = Bytes::from(format!("{me} {}", now + lease.as_millis() as u64));
        let entry = self
            .kv
            .entry(LEASE)
            .await
            .map_err(|e| BusError::new("lease", e))?;
        let Some(e) = entry else {
            return match self.kv.create(LEASE, value).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(BusError::new("lease", e)),
            };
        };
        let text = String::from_utf8_lossy(&e.value);
        let (holder, until) = text.split_once(' ').unwrap_or(("", "0"));
        let free = holder == me || until.parse::<u64>().map_or(true, |u| u < now);
        if !free {
            return Ok(false);
        }
        match self.kv.update(LEASE, value, e.revision).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(BusError::new("lease", e)),
        }
    }

    /// Gives the lease up (on shutdown), so another daemon takes it at once.
    pub async fn release_lease(&self, me: &str) -> Result<(), BusError> {
        let Some(e) = self
            .kv
            .entry(LEASE)
            .await
            .map_err(|e| BusError::new("lease", e))?
        else {
            return Ok(());
        };
        if !e.value.starts_with(format!("{me} ").as_bytes()) {
            return Ok(());
        }
        match self
            .kv
            .update(LEASE, Bytes::from(format!("{me} 0")), e.revision)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(()),
            Err(e) => Err(BusError::new("lease", e)),
        }
    }
}
