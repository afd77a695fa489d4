//! The local services tests talk to, started if they are not running (tests/services.sh starts
//! them first in the test command; this covers a bare `cargo test`).

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const MOTO_ENDPOINT: &str = "http://127.0.0.1:5055";

static STARTING: Mutex<()> = Mutex::new(());

fn listening(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

#[allow(
    clippy::zombie_processes,
    reason = "the service outlives the tests on purpose"
)]
fn ensure(port: u16, program: &str, args: &[&str]) {
    let _one_at_a_time = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    if listening(port) {
        return;
    }
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {program} (run tests/services.sh to install it): {e}"));
    let started = Instant::now();
    while !listening(port) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{program} did not start listening on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Redis on 127.0.0.1:6379.
pub fn redis() -> &'static str {
    ensure(
        6379,
        "redis-server",
        &[
            "--bind",
            "127.0.0.1",
            "--port",
            "6379",
            "--save",
            "",
            "--daemonize",
            "yes",
        ],
    );
    REDIS_URL
}

/// `moto_server` (SQS, DynamoDB) on 127.0.0.1:5055.
pub fn moto() -> &'static str {
    ensure(5055, "moto_server", &["-H", "127.0.0.1", "-p", "5055"]);
    MOTO_ENDPOINT
}

/// A name no other test (or earlier run) uses, for Redis prefixes and SQS queues.
pub fn unique(name: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // SQS allows 80 characters.
    let name: String = name.chars().take(40).collect();
    format!(
        "pt-{name}-{}-{}-{n}",
        std::process::id(),
        now % 1_000_000_000
    )
}

/// Which queue a test server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    Embedded,
    Redis,
    Sqs,
}

/// The settings that put a server on this queue backend, in a namespace no other test shares
/// (a Redis key prefix, an SQS queue).
pub fn queue_env(kind: QueueKind, name: &str) -> Vec<(&'static str, String)> {
    match kind {
        QueueKind::Embedded => vec![("QUEUE_BACKEND", "embedded".into())],
        QueueKind::Redis => vec![
            ("QUEUE_BACKEND", "redis".into()),
            ("REDIS_URL", redis().into()),
            ("PODS_REDIS_PREFIX", unique(name)),
        ],
        QueueKind::Sqs => vec![
            ("QUEUE_BACKEND", "sqs".into()),
            ("AWS_ENDPOINT_URL", moto().into()),
            ("AWS_REGION", "us-east-1".into()),
            ("SQS_QUEUE_NAME", unique(name)),
        ],
    }
}

/// `queue_env` plus `extra`, as the `&[(&str, &str)]` the server helpers take.
pub fn with_queue<'a>(
    owned: &'a [(&'static str, String)],
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    owned
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .chain(extra.iter().copied())
        .collect()
}

/// The settings that keep a server's pod configs in DynamoDB (moto), in a table of its own.
pub fn dynamodb_env(name: &str) -> Vec<(&'static str, String)> {
    vec![
        ("POD_STORE", "dynamodb".into()),
        ("AWS_ENDPOINT_URL", moto().into()),
        ("AWS_REGION", "us-east-1".into()),
        ("PODS_DYNAMODB_TABLE", unique(name)),
    ]
}
