//! The rate limiter's shared buckets, against the real Redis on 127.0.0.1:6379: every node
//! (here, two limiters on separate connections) takes from the same bucket.

use std::time::Duration;

use pods::limiter::{Limiter, Rate};

const REDIS: &str = "redis://127.0.0.1:6379";

#[tokio::test]
async fn nodes_take_from_one_bucket_through_redis() {
    let prefix = format!("pods-rate-{}", pods::domain::new_id());
    let a = Limiter::redis(REDIS, &prefix).await.expect("node a");
    let b = Limiter::redis(REDIS, &prefix).await.expect("node b");
    let rate = Rate {
        per_minute: 60,
        burst: 4,
    };
    for limiter in [&a, &b, &a, &b] {
        assert!(limiter.take("user:u1", rate, 1).await.is_ok());
    }
    // Four taken between them: the bucket is empty for both.
    for limiter in [&a, &b] {
        let refused = limiter.take("user:u1", rate, 1).await.expect_err("empty");
        assert_eq!(refused.retry_after, Duration::from_secs(1));
    }
    // Another key has a bucket of its own; a local limiter shares nothing.
    assert!(b.take("user:u2", rate, 4).await.is_ok());
    assert!(Limiter::local().take("user:u1", rate, 4).await.is_ok());
    // A token comes back each second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(a.take("user:u1", rate, 1).await.is_ok());
    assert!(b.take("user:u1", rate, 1).await.is_err());
}
