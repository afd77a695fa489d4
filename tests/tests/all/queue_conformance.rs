//! One suite, every queue backend: embedded (SQLite), Redis (the real server on 127.0.0.1:6379)
//! and SQS (`moto_server` on loopback). Each test gets its own database, key prefix or queue.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pods::queue::{Delivery, Job, Queue, QueueCounts};
use pods_e2e::{scratch, services};

async fn embedded(name: &str) -> Arc<dyn Queue> {
    let path = scratch(&format!("queue-{name}")).join("pods.db");
    let store = pods::store::Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("open SQLite");
    Arc::new(pods::queue::Embedded::new(store))
}

async fn redis(name: &str) -> Arc<dyn Queue> {
    let queue = pods::queue::RedisQueue::connect(services::redis(), &services::unique(name))
        .await
        .expect("connect to Redis");
    Arc::new(queue)
}

async fn sqs(name: &str) -> Arc<dyn Queue> {
    let aws = pods::aws::AwsSettings::local(services::moto());
    let queue = pods::queue::SqsQueue::open(aws.sqs(), None, &services::unique(name), 4)
        .await
        .expect("make an SQS queue in moto");
    Arc::new(queue)
}

fn job(n: usize) -> Job {
    Job {
        execution_id: format!("execution-{n:03}"),
        workspace_id: "ws".into(),
    }
}

const LEASE: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_millis(200);

/// Reads until `want` deliveries arrived or `within` passed.
async fn take(
    queue: &Arc<dyn Queue>,
    want: usize,
    lease: Duration,
    within: Duration,
) -> Vec<Delivery> {
    let started = Instant::now();
    let mut got = Vec::new();
    while got.len() < want && started.elapsed() < within {
        got.extend(
            queue
                .consume(want - got.len(), lease, WAIT)
                .await
                .expect("consume"),
        );
    }
    got
}

fn ids(deliveries: &[Delivery]) -> Vec<String> {
    deliveries
        .iter()
        .map(|d| d.job.execution_id.clone())
        .collect()
}

async fn every_job_is_delivered_once_acked_and_then_gone(queue: Arc<dyn Queue>) {
    for n in 0..25 {
        queue.add(&job(n), Duration::ZERO).await.expect("add");
    }
    // The oldest waiting job's age, where the backend can tell (not SQS).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waiting = queue.metrics().await.expect("metrics");
    if let Some(age) = waiting.oldest_waiting_ms {
        assert!((250..60_000).contains(&age), "{waiting:?}");
    }
    let got = take(&queue, 25, LEASE, Duration::from_secs(10)).await;
    let unique: BTreeSet<_> = ids(&got).into_iter().collect();
    assert_eq!(unique.len(), 25, "every job delivered: {unique:?}");
    assert_eq!(got.len(), 25, "and none twice while leased");
    for d in &got {
        assert_eq!(d.job.workspace_id, "ws");
        queue.ack(d).await.expect("ack");
    }
    // Past the lease: acked jobs do not come back.
    tokio::time::sleep(LEASE + Duration::from_millis(500)).await;
    let again = take(&queue, 1, LEASE, Duration::from_secs(1)).await;
    assert!(again.is_empty(), "acked jobs came back: {:?}", ids(&again));
    assert_empty(queue.metrics().await.expect("metrics"));
}

async fn due_jobs_come_in_the_order_they_were_added(queue: Arc<dyn Queue>) {
    if queue.backend() == "sqs" {
        // SQS standard queues promise no order; nothing to hold them to.
        return;
    }
    for n in 0..10 {
        queue.add(&job(n), Duration::ZERO).await.expect("add");
    }
    let mut order = Vec::new();
    while order.len() < 10 {
        let got = take(
            &queue,
            3.min(10 - order.len()),
            LEASE,
            Duration::from_secs(5),
        )
        .await;
        assert!(!got.is_empty(), "jobs went missing after {order:?}");
        for d in &got {
            queue.ack(d).await.expect("ack");
        }
        order.extend(ids(&got));
    }
    assert_eq!(
        order,
        (0..10).map(|n| job(n).execution_id).collect::<Vec<_>>()
    );
}

async fn a_lease_that_runs_out_delivers_the_job_again(queue: Arc<dyn Queue>) {
    let lease = Duration::from_secs(1);
    queue.add(&job(1), Duration::ZERO).await.expect("add");
    let first = take(&queue, 1, lease, Duration::from_secs(5)).await;
    assert_eq!(ids(&first), vec![job(1).execution_id]);
    // Leased: nobody else gets it.
    let meanwhile = queue
        .consume(1, lease, Duration::ZERO)
        .await
        .expect("consume");
    assert!(meanwhile.is_empty(), "delivered while leased");
    // The worker died: after the lease, it is delivered again, and acking that works.
    let started = Instant::now();
    let again = take(&queue, 1, lease, Duration::from_secs(10)).await;
    assert_eq!(ids(&again), vec![job(1).execution_id]);
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "redelivered before the lease ran out"
    );
    queue.ack(&again[0]).await.expect("ack");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        take(&queue, 1, lease, Duration::from_millis(500))
            .await
            .is_empty()
    );
}

async fn extending_a_lease_keeps_the_job(queue: Arc<dyn Queue>) {
    let lease = Duration::from_secs(2);
    queue.add(&job(1), Duration::ZERO).await.expect("add");
    let got = take(&queue, 1, lease, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    // Renewed well within each lease, for two and a half leases.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        queue.extend(&got[0], lease).await.expect("extend");
        let stolen = queue
            .consume(1, lease, Duration::ZERO)
            .await
            .expect("consume");
        assert!(
            stolen.is_empty(),
            "delivered again while its lease was renewed"
        );
    }
    queue.ack(&got[0]).await.expect("ack");
}

async fn a_retry_waits_out_its_delay(queue: Arc<dyn Queue>) {
    queue.add(&job(1), Duration::ZERO).await.expect("add");
    let got = take(&queue, 1, LEASE, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    let retried = Instant::now();
    queue
        .retry(&got[0], Duration::from_secs(2))
        .await
        .expect("retry");
    let metrics = queue.metrics().await.expect("metrics");
    assert_eq!(metrics.waiting, 0, "{metrics:?}");
    assert_eq!(metrics.delayed + metrics.active, 1, "{metrics:?}");
    let again = take(&queue, 1, LEASE, Duration::from_secs(10)).await;
    assert_eq!(ids(&again), vec![job(1).execution_id]);
    let waited = retried.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "came back after {waited:?}"
    );
    queue.ack(&again[0]).await.expect("ack");
}

async fn metrics_count_waiting_and_leased_jobs(queue: Arc<dyn Queue>) {
    for n in 0..3 {
        queue.add(&job(n), Duration::ZERO).await.expect("add");
    }
    queue
        .add(&job(9), Duration::from_secs(30))
        .await
        .expect("add delayed");
    let metrics = queue.metrics().await.expect("metrics");
    assert_eq!(
        (metrics.waiting, metrics.delayed, metrics.active),
        (3, 1, 0),
        "{metrics:?}"
    );
    let got = take(&queue, 1, LEASE, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    let metrics = queue.metrics().await.expect("metrics");
    assert_eq!(
        (metrics.waiting, metrics.delayed, metrics.active),
        (2, 1, 1),
        "{metrics:?}"
    );
}

async fn cancel_is_accepted_and_a_cancelled_job_can_still_be_acked(queue: Arc<dyn Queue>) {
    queue.add(&job(1), Duration::ZERO).await.expect("add");
    queue.add(&job(2), Duration::ZERO).await.expect("add");
    queue.cancel(&job(1).execution_id).await.expect("cancel");
    // A backend that can find the job drops it; one that cannot delivers it, and the worker
    // (which finds the execution cancelled) acks it. Either way nothing is left afterwards.
    // (Within the lease, so nothing is delivered twice.)
    let got = take(&queue, 2, LEASE, Duration::from_millis(1500)).await;
    assert!(ids(&got).contains(&job(2).execution_id));
    if queue.backend() == "embedded" {
        assert_eq!(
            ids(&got),
            vec![job(2).execution_id],
            "the embedded queue drops it"
        );
    }
    for d in &got {
        queue.ack(d).await.expect("ack");
    }
    assert_empty(queue.metrics().await.expect("metrics"));
}

async fn status_says_where_a_job_stands_as_far_as_the_backend_can_tell(queue: Arc<dyn Queue>) {
    use pods::queue::JobState;
    // What each backend can look up: the embedded queue everything, Redis a delayed retry,
    // SQS nothing (`None`).
    let exact = queue.backend() == "embedded";
    let finds_delayed = exact || queue.backend() == "redis";
    let status =
        |queue: Arc<dyn Queue>| async move { queue.status(&job(1)).await.expect("status") };
    queue.add(&job(1), Duration::ZERO).await.expect("add");
    assert_eq!(
        status(queue.clone()).await,
        exact.then_some(JobState::Waiting)
    );
    let got = take(&queue, 1, LEASE, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        status(queue.clone()).await,
        exact.then_some(JobState::Active)
    );
    queue
        .retry(&got[0], Duration::from_secs(30))
        .await
        .expect("retry");
    assert_eq!(
        status(queue.clone()).await,
        finds_delayed.then_some(JobState::Delayed)
    );
    assert_eq!(
        queue.status(&job(2)).await.expect("status"),
        None,
        "no such job"
    );
}

macro_rules! conformance {
    ($($backend:ident),*) => {
        $(mod $backend {
            conformance!(@tests $backend:
                every_job_is_delivered_once_acked_and_then_gone,
                due_jobs_come_in_the_order_they_were_added,
                a_lease_that_runs_out_delivers_the_job_again,
                extending_a_lease_keeps_the_job,
                a_retry_waits_out_its_delay,
                metrics_count_waiting_and_leased_jobs,
                cancel_is_accepted_and_a_cancelled_job_can_still_be_acked,
                status_says_where_a_job_stands_as_far_as_the_backend_can_tell);
        })*
    };
    (@tests $backend:ident: $($test:ident),*) => {
        $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            super::$test(super::$backend(stringify!($test)).await).await;
        })*
    };
}

conformance!(embedded, redis, sqs);

/// SQS moves a job received more often than allowed (its workers keep dying) to the dead-letter
/// queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_moves_a_job_that_keeps_failing_to_the_dead_letter_queue() {
    let aws = pods::aws::AwsSettings::local(services::moto());
    let client = aws.sqs();
    let name = services::unique("dlq");
    let queue: Arc<dyn Queue> = Arc::new(
        pods::queue::SqsQueue::open(client.clone(), None, &name, 2)
            .await
            .expect("make an SQS queue in moto"),
    );
    let lease = Duration::from_secs(1);
    queue.add(&job(1), Duration::ZERO).await.expect("add");
    // Two receives, never acked: the workers died.
    for _ in 0..2 {
        let got = take(&queue, 1, lease, Duration::from_secs(10)).await;
        assert_eq!(ids(&got), vec![job(1).execution_id]);
        tokio::time::sleep(lease + Duration::from_millis(200)).await;
    }
    let third = take(&queue, 1, lease, Duration::from_secs(3)).await;
    assert!(
        third.is_empty(),
        "delivered a third time: {:?}",
        ids(&third)
    );
    let dlq = client
        .get_queue_url()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .expect("the dead-letter queue")
        .queue_url
        .expect("url");
    let dead = client
        .receive_message()
        .queue_url(dlq)
        .wait_time_seconds(2)
        .send()
        .await
        .expect("receive")
        .messages
        .unwrap_or_default();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]
            .body
            .as_deref()
            .unwrap_or_default()
            .contains(&job(1).execution_id)
    );
}

/// Nothing waiting, delayed or running (and so nothing waiting for any time at all).
fn assert_empty(counts: QueueCounts) {
    let nothing_waits = matches!(counts.oldest_waiting_ms, None | Some(0));
    assert!(
        counts.waiting == 0 && counts.delayed == 0 && counts.active == 0 && nothing_waits,
        "{counts:?}"
    );
}
