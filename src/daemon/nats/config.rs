//! `[daemon.nats]`: the bus several daemons share, as written and as checked.
//!
//! Resolved in the configuration's pure first phase (`config::load`), so a bad value is an
//! error with its TOML key's line and column before anything connects.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_spanned::Spanned;

use crate::config::Ctx;

/// `[daemon.nats]`: several daemons share the work through NATS JetStream. Without this section
/// the daemon works alone, as before.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NatsConfig {
    /// Server URLs (`"nats://10.0.0.1:4222"`), one or several of one cluster; the client picks
    /// one and fails over to the others.
    pub urls: Spanned<Vec<Spanned<String>>>,
    /// The work-queue stream of file notices. Default `"SWEEP_FILES"`.
    pub stream: Option<Spanned<String>>,
    /// The subject notices are published on. Default `"sweep.files"`.
    pub subject: Option<Spanned<String>>,
    /// The durable pull consumer every daemon shares. Default `"sweep-workers"`.
    pub consumer: Option<Spanned<String>>,
    /// The key-value bucket holding fingerprint claims, failed files and the outputs lease.
    /// Default `"sweep_files"`.
    pub bucket: Option<Spanned<String>>,
    /// Seconds a delivered notice may go without an acknowledgement (or a progress ack) before
    /// the server hands it to another daemon. Default 30.
    pub ack_wait_secs: Option<Spanned<f64>>,
    /// Deliveries of one notice before it is terminated and its file recorded as failed.
    /// Default 5.
    pub max_deliver: Option<Spanned<u64>>,
    /// Seconds the server remembers a notice's id (`Nats-Msg-Id`, the fingerprint) to drop a
    /// second publish of it. Default 120.
    pub duplicate_window_secs: Option<Spanned<f64>>,
    /// Copies of the stream and the bucket in a JetStream cluster (1, 3 or 5). Default 1.
    pub replicas: Option<Spanned<u64>>,
    /// Seconds a daemon holds the right to rewrite the outputs before it must renew it.
    /// Default 10.
    pub lease_secs: Option<Spanned<f64>>,
    /// A NATS credentials file (`.creds`: a user JWT and its NKey seed).
    pub credentials: Option<Spanned<String>>,
}

/// `[daemon.nats]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct NatsSpec {
    /// Comma-joined, as the client takes them.
    pub urls: Vec<String>,
    pub stream: String,
    pub subject: String,
    pub consumer: String,
    pub bucket: String,
    pub ack_wait: Duration,
    pub max_deliver: u64,
    pub duplicate_window: Duration,
    pub replicas: usize,
    pub lease: Duration,
    pub credentials: Option<PathBuf>,
}

/// A stream, consumer or bucket name: the server takes letters, digits, `-` and `_`.
fn name(cx: &mut Ctx, v: &Option<Spanned<String>>, key: &str, default: &str) -> String {
    let Some(v) = v else {
        return default.to_string();
    };
    let s = v.get_ref();
    if s.is_empty()
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        cx.err(
            v.span(),
            format!("`{key}` is {s:?}; use letters, digits, `-` and `_` only"),
        );
    }
    s.clone()
}

/// A subject of dot-separated tokens, without wildcards.
fn subject(cx: &mut Ctx, v: &Option<Spanned<String>>, default: &str) -> String {
    let Some(v) = v else {
        return default.to_string();
    };
    let s = v.get_ref();
    let ok = !s.is_empty()
        && s.split('.').all(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'*' && b != b'>')
        });
    if !ok {
        cx.err(
            v.span(),
            format!("`subject` is {s:?}; use dot-separated tokens without `*` or `>`"),
        );
    }
    s.clone()
}

pub(crate) fn resolve(cx: &mut Ctx, n: &NatsConfig) -> NatsSpec {
    let mut urls = Vec::new();
    if n.urls.get_ref().is_empty() {
        cx.err(
            n.urls.span(),
            "`urls` is empty; name at least one server, e.g. \"nats://127.0.0.1:4222\"",
        );
    }
    for u in n.urls.get_ref() {
        let s = u.get_ref().trim();
        let scheme_ok = ["nats://", "tls://"].iter().any(|p| s.starts_with(p));
        if !scheme_ok || s.contains(',') {
            cx.err(
                u.span(),
                format!(
                    "{s:?} is not a server URL; write \"nats://HOST:PORT\" or \"tls://HOST:PORT\""
                ),
            );
        }
        urls.push(s.to_string());
    }
    let replicas = cx.count(&n.replicas, "replicas", 1..=5, 1);
    NatsSpec {
        urls,
        stream: name(cx, &n.stream, "stream", "SWEEP_FILES"),
        subject: subject(cx, &n.subject, "sweep.files"),
        consumer: name(cx, &n.consumer, "consumer", "sweep-workers"),
        bucket: name(cx, &n.bucket, "bucket", "sweep_files"),
        ack_wait: cx.secs(
            &n.ack_wait_secs,
            "ack_wait_secs",
            1.0..=3600.0,
            Duration::from_secs(30),
        ),
        max_deliver: cx
            .within(&n.max_deliver, "max_deliver", 1..=1000)
            .unwrap_or(5),
        duplicate_window: cx.secs(
            &n.duplicate_window_secs,
            "duplicate_window_secs",
            1.0..=86400.0,
            Duration::from_secs(120),
        ),
        replicas,
        lease: cx.secs(
            &n.lease_secs,
            "lease_secs",
            1.0..=3600.0,
            Duration::from_secs(10),
        ),
        credentials: n.credentials.as_ref().map(|c| PathBuf::from(c.get_ref())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(nats: &str) -> Result<NatsSpec, Vec<String>> {
        let text = format!(
            "[readers.o]\npath = \"in/*.csv\"\n[aggregators.s]\ninputs = [\"o\"]\n\
             [sinks.t]\ninputs = [\"s\"]\npath = \"out\"\n[daemon]\nstate = \"shared\"\n\
             [daemon.nats]\n{nats}"
        );
        crate::config::load("p.toml", &text, &[])
            .map(|p| p.daemon.and_then(|d| d.nats).expect("a nats section"))
            .map_err(|e| e.lines())
    }

    #[test]
    fn defaults_are_those_the_readme_gives() {
        let s = spec("urls = [\"nats://a:4222\", \"tls://b:4222\"]\n").unwrap();
        assert_eq!(
            s,
            NatsSpec {
                urls: vec!["nats://a:4222".into(), "tls://b:4222".into()],
                stream: "SWEEP_FILES".into(),
                subject: "sweep.files".into(),
                consumer: "sweep-workers".into(),
                bucket: "sweep_files".into(),
                ack_wait: Duration::from_secs(30),
                max_deliver: 5,
                duplicate_window: Duration::from_secs(120),
                replicas: 1,
                lease: Duration::from_secs(10),
                credentials: None,
            }
        );
    }

    #[test]
    fn bad_values_name_their_key_with_line_and_column() {
        assert_eq!(
            spec("urls = []\nbucket = \"a.b\"\n").unwrap_err(),
            [
                "p.toml:11:8: `urls` is empty; name at least one server, e.g. \"nats://127.0.0.1:4222\"",
                "p.toml:12:10: `bucket` is \"a.b\"; use letters, digits, `-` and `_` only",
            ]
        );
        assert!(spec("urls = [\"nats://a:1,nats://b:1\"]\n").is_err());
        assert!(spec("stream = \"S\"\n").unwrap_err()[0].contains("missing field `urls`"));
    }
}
