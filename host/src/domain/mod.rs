//! The types everyone shares, at the bottom of the module graph: this module uses no other
//! module of the crate, and every other module may use it.
//!
//! - [`chat`]: a chat request and its answer (`ChatRequest`, `Message`, `Usage`, `Completion`, …);
//! - [`execution`]: an execution's status, what was asked (`ExecuteRequest`, `QueuedRequest`) and
//!   what came back (`ExecutionResult`);
//! - [`error`]: `ErrorCode`, each with its HTTP status;
//! - [`money`]: `Cost` and `Price`, exact decimals;
//! - [`member`]: a member's `Role` in a workspace (not a chat message's `MessageRole`);
//! - [`time`]: ids and unix-millisecond times.

pub mod chat;
pub mod error;
pub mod execution;
pub mod member;
pub mod money;
pub mod time;

pub use chat::{
    ChatRequest, Completion, FinishReason, Message, MessageRole, ResponseFormat, StreamDelta, Usage,
};
pub use error::ErrorCode;
pub use execution::{
    ExecuteRequest, ExecutionResult, ExecutionStatus, MessageInput, QueuedRequest, TEMPERATURE,
    TOP_P, UsageView, check_sampling,
};
pub use member::{Denied, KeyScope, Principal, Role};
pub use money::{Cost, Price};
pub use time::{iso_time, new_id, now_ms};
