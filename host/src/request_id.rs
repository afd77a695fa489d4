//! The request id: the `x-request-id` a client sent (or one made up), carried through the
//! handling of its request — its log lines and span, its answer's `x-request-id` header, and the
//! execution it records — so an operator can follow one request from a client's report to the
//! logs and the execution.
//!
//! The API's middleware runs each request inside [`scope`]; code below reads [`current`]. Work
//! a request hands to another task (a streamed call's provider call, a queued execution's
//! worker) no longer sees it: what it records was recorded before the hand-off.

use std::sync::Arc;

tokio::task_local! {
    static REQUEST_ID: Arc<str>;
}

/// Longest request id accepted from a client; a longer or odder one is replaced.
const MAX_LEN: usize = 128;

/// The client's id if it is a sensible one (1–128 of `A–Z a–z 0–9 - _ . :`), else a new UUID.
pub fn accept_or_make(sent: Option<&str>) -> String {
    match sent {
        Some(id)
            if (1..=MAX_LEN).contains(&id.len())
                && id.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')
                }) =>
        {
            id.to_string()
        }
        _ => uuid::Uuid::now_v7().to_string(),
    }
}

/// Runs `work` with `id` as the current request id.
pub async fn scope<F: Future>(id: Arc<str>, work: F) -> F::Output {
    REQUEST_ID.scope(id, work).await
}

/// The id of the request being handled, if any.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(|id| id.to_string()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sensible_id_is_kept_and_anything_else_replaced() {
        assert_eq!(accept_or_make(Some("req-42.a_b:c")), "req-42.a_b:c");
        for odd in ["", "has space", "new\nline", "ünïcode", &"x".repeat(129)] {
            let made = accept_or_make(Some(odd));
            assert_ne!(made, odd);
            assert!(uuid::Uuid::parse_str(&made).is_ok());
        }
        assert!(uuid::Uuid::parse_str(&accept_or_make(None)).is_ok());
    }

    #[tokio::test]
    async fn the_id_is_current_inside_its_scope_only() {
        assert_eq!(current(), None);
        let inside = scope("r1".into(), async { current() }).await;
        assert_eq!(inside.as_deref(), Some("r1"));
        assert_eq!(current(), None);
    }
}
