//! The SQS backend (AWS, or `moto_server` on loopback via `AWS_ENDPOINT_URL`).
//!
//! - The lease is the message's visibility timeout: set on receive, extended while the job runs;
//!   a message whose worker died becomes visible again when it runs out.
//! - A retry keeps the message and hides it for the backoff (up to SQS's 12 hours).
//! - A message received more than `max_receives` times (a job that keeps killing its workers)
//!   moves to the dead-letter queue `{name}-dlq`; the sweeper then ends its execution.
//! - Standard queues do not promise order.

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::QueueAttributeName;

use super::{Delivery, Job, JobState, Queue, QueueCounts, QueueError, Result};

pub struct SqsQueue {
    client: Client,
    url: String,
}

fn sqs_error<E>(e: E) -> QueueError
where
    E: std::error::Error + aws_sdk_sqs::error::ProvideErrorMetadata,
{
    // The service's own code and message; the whole context (raw response included) otherwise.
    QueueError::Sqs(match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        _ => DisplayErrorContext(e).to_string(),
    })
}

/// Whole seconds, rounded up, within SQS's bounds.
fn seconds(d: Duration, max: u64) -> i32 {
    let s = d.as_millis().div_ceil(1000) as u64;
    s.min(max) as i32
}

impl SqsQueue {
    /// Uses the queue at `url`, or finds or makes the queue `name` with its dead-letter queue.
    pub async fn open(
        client: Client,
        url: Option<String>,
        name: &str,
        max_receives: u32,
    ) -> Result<Self> {
        if let Some(url) = url {
            return Ok(SqsQueue { client, url });
        }
        let dlq = client
            .create_queue()
            .queue_name(format!("{name}-dlq"))
            .send()
            .await
            .map_err(sqs_error)?
            .queue_url
            .ok_or_else(|| QueueError::Sqs("CreateQueue returned no URL".into()))?;
        let dlq_arn = client
            .get_queue_attributes()
            .queue_url(&dlq)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(sqs_error)?
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .ok_or_else(|| QueueError::Sqs("the dead-letter queue has no ARN".into()))?;
        let url = client
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .map_err(sqs_error)?
            .queue_url
            .ok_or_else(|| QueueError::Sqs("CreateQueue returned no URL".into()))?;
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": max_receives.max(1).to_string(),
        });
        client
            .set_queue_attributes()
            .queue_url(&url)
            .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
            .send()
            .await
            .map_err(sqs_error)?;
        Ok(SqsQueue { client, url })
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

#[async_trait::async_trait]
impl Queue for SqsQueue {
    fn backend(&self) -> &'static str {
        "sqs"
    }

    async fn add(&self, job: &Job, delay: Duration) -> Result<()> {
        let body = serde_json::to_string(job).map_err(|e| QueueError::Config(e.to_string()))?;
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            // SQS delays a message by at most 15 minutes.
            .delay_seconds(seconds(delay, 900))
            .send()
            .await
            .map_err(sqs_error)?;
        Ok(())
    }

    async fn consume(&self, max: usize, lease: Duration, wait: Duration) -> Result<Vec<Delivery>> {
        let received = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .visibility_timeout(seconds(lease, 43_200).max(1))
            .wait_time_seconds(seconds(wait, 20))
            .send()
            .await
            .map_err(sqs_error)?;
        let mut deliveries = Vec::new();
        for message in received.messages.unwrap_or_default() {
            let (Some(body), Some(receipt)) = (message.body, message.receipt_handle) else {
                continue;
            };
            match serde_json::from_str::<Job>(&body) {
                Ok(job) => deliveries.push(Delivery {
                    job,
                    handle: receipt,
                }),
                Err(e) => {
                    // Not ours to run, and never will be: drop it rather than redeliver forever.
                    tracing::warn!(error = %e, "deleting an unreadable SQS message");
                    let _ = self
                        .client
                        .delete_message()
                        .queue_url(&self.url)
                        .receipt_handle(receipt)
                        .send()
                        .await;
                }
            }
        }
        Ok(deliveries)
    }

    async fn extend(&self, delivery: &Delivery, lease: Duration) -> Result<()> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(&delivery.handle)
            .visibility_timeout(seconds(lease, 43_200).max(1))
            .send()
            .await
            .map_err(sqs_error)?;
        Ok(())
    }

    async fn ack(&self, delivery: &Delivery) -> Result<()> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(&delivery.handle)
            .send()
            .await
            .map_err(sqs_error)?;
        Ok(())
    }

    async fn retry(&self, delivery: &Delivery, delay: Duration) -> Result<()> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(&delivery.handle)
            // SQS counts whole seconds: the nearest keeps the schedule's jitter (a ceiling
            // would add up to a second to every wait).
            .visibility_timeout(((delay.as_millis() + 500) / 1000).min(43_200) as i32)
            .send()
            .await
            .map_err(sqs_error)?;
        Ok(())
    }

    async fn cancel(&self, _execution_id: &str) -> Result<()> {
        // SQS cannot find a message by content; the worker that receives it drops it.
        Ok(())
    }

    async fn status(&self, _job: &Job) -> Result<Option<JobState>> {
        Ok(None)
    }

    async fn metrics(&self) -> Result<QueueCounts> {
        let attributes = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(sqs_error)?
            .attributes
            .unwrap_or_default();
        let count = |name: QueueAttributeName| {
            attributes
                .get(&name)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0)
        };
        Ok(QueueCounts {
            waiting: count(QueueAttributeName::ApproximateNumberOfMessages),
            delayed: count(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
            active: count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            oldest_waiting_ms: None,
        })
    }
}
