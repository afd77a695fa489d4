//! Error codes: every `{"error": {"code"}}` the API answers and every `errorCode` an execution
//! records, each with the HTTP status it is answered with.

use serde::Serialize;

pub use http::StatusCode;

/// One error code; serialized as its wire name (`INVALID_FIELD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    // The request itself.
    MalformedJson,
    InvalidUtf8,
    /// Wrong type, unknown field, out of range.
    InvalidField,
    /// A body the server could not read at all.
    BadBody,
    BodyTooLarge,
    UnsupportedMediaType,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    /// The caller went over one of the server's rate limits; `Retry-After` says when to retry.
    RateLimited,
    /// An API key's monthly budget is spent.
    BudgetExhausted,
    /// An `Idempotency-Key` used again with a different request.
    IdempotencyKeyReused,
    // Running a pod.
    UnknownProvider,
    UnknownPluginVersion,
    UnknownModel,
    UnknownExtractor,
    MissingProviderKey,
    MissingModel,
    MissingMessages,
    EdgeCycle,
    /// A flow run's budget does not cover even its cheapest pod.
    BudgetTooLow,
    /// A flow run's budget cannot bound a pod whose model has no price.
    UnpricedModelUnderBudget,
    /// A run's flow gained or lost pods or edges since it ran: it cannot be resumed.
    FlowChanged,
    AlreadyFinished,
    ExecutionCancelled,
    /// A queued execution that no longer resolves when its worker takes it.
    InvalidRequest,
    // Plugins, as loaded by operators.
    PluginInvalid,
    PluginNonconformant,
    PluginTooLarge,
    PluginCompileTimeout,
    PluginsReadOnly,
    // A provider call: the plugin's side.
    PluginError,
    PluginBusy,
    HostNotPermitted,
    /// The egress policy refused the destination (an internal address, unless allowed).
    DestinationNotAllowed,
    /// A plugin handed back more than the host takes (headers, URL, body, text, error).
    PluginOutputTooLarge,
    // A provider call: the provider's side.
    ProviderAuth,
    ProviderRateLimited,
    ProviderQuotaExceeded,
    ProviderInvalidRequest,
    ProviderContextLength,
    ProviderContentFilter,
    ProviderOverloaded,
    ProviderServerError,
    ProviderMalformedResponse,
    ProviderUnreachable,
    /// The provider's answer began and was cut off (its connection dropped mid-body or
    /// mid-stream).
    ProviderStreamInterrupted,
    ProviderTimeout,
    // The server.
    StoreUnavailable,
    QueueUnavailable,
    KeyUnreadable,
    Internal,
    /// The database refused an answer as it is (a constraint, an encoding): the execution ended
    /// with this instead of being run again.
    StoreRejected,
    // How an execution ended without an answer (recorded on it; never an HTTP answer).
    AttemptsExhausted,
    Interrupted,
    InternalError,
    Cancelled,
}

impl ErrorCode {
    /// Every code, for checks over all of them.
    pub const ALL: [ErrorCode; 58] = [
        ErrorCode::MalformedJson,
        ErrorCode::InvalidUtf8,
        ErrorCode::InvalidField,
        ErrorCode::BadBody,
        ErrorCode::BodyTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::RateLimited,
        ErrorCode::BudgetExhausted,
        ErrorCode::IdempotencyKeyReused,
        ErrorCode::UnknownProvider,
        ErrorCode::UnknownPluginVersion,
        ErrorCode::UnknownModel,
        ErrorCode::UnknownExtractor,
        ErrorCode::MissingProviderKey,
        ErrorCode::MissingModel,
        ErrorCode::MissingMessages,
        ErrorCode::EdgeCycle,
        ErrorCode::BudgetTooLow,
        ErrorCode::UnpricedModelUnderBudget,
        ErrorCode::FlowChanged,
        ErrorCode::AlreadyFinished,
        ErrorCode::ExecutionCancelled,
        ErrorCode::InvalidRequest,
        ErrorCode::PluginInvalid,
        ErrorCode::PluginNonconformant,
        ErrorCode::PluginTooLarge,
        ErrorCode::PluginCompileTimeout,
        ErrorCode::PluginsReadOnly,
        ErrorCode::PluginError,
        ErrorCode::PluginBusy,
        ErrorCode::HostNotPermitted,
        ErrorCode::DestinationNotAllowed,
        ErrorCode::PluginOutputTooLarge,
        ErrorCode::ProviderAuth,
        ErrorCode::ProviderRateLimited,
        ErrorCode::ProviderQuotaExceeded,
        ErrorCode::ProviderInvalidRequest,
        ErrorCode::ProviderContextLength,
        ErrorCode::ProviderContentFilter,
        ErrorCode::ProviderOverloaded,
        ErrorCode::ProviderServerError,
        ErrorCode::ProviderMalformedResponse,
        ErrorCode::ProviderUnreachable,
        ErrorCode::ProviderStreamInterrupted,
        ErrorCode::ProviderTimeout,
        ErrorCode::StoreUnavailable,
        ErrorCode::QueueUnavailable,
        ErrorCode::KeyUnreadable,
        ErrorCode::Internal,
        ErrorCode::StoreRejected,
        ErrorCode::AttemptsExhausted,
        ErrorCode::Interrupted,
        ErrorCode::InternalError,
        ErrorCode::Cancelled,
    ];

    /// The wire name, e.g. `INVALID_FIELD`.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            MalformedJson => "MALFORMED_JSON",
            InvalidUtf8 => "INVALID_UTF8",
            InvalidField => "INVALID_FIELD",
            BadBody => "BAD_BODY",
            BodyTooLarge => "BODY_TOO_LARGE",
            UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Unauthorized => "UNAUTHORIZED",
            Forbidden => "FORBIDDEN",
            NotFound => "NOT_FOUND",
            Conflict => "CONFLICT",
            RateLimited => "RATE_LIMITED",
            BudgetExhausted => "BUDGET_EXHAUSTED",
            IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            UnknownProvider => "UNKNOWN_PROVIDER",
            UnknownPluginVersion => "UNKNOWN_PLUGIN_VERSION",
            UnknownModel => "UNKNOWN_MODEL",
            UnknownExtractor => "UNKNOWN_EXTRACTOR",
            MissingProviderKey => "MISSING_PROVIDER_KEY",
            MissingModel => "MISSING_MODEL",
            MissingMessages => "MISSING_MESSAGES",
            EdgeCycle => "EDGE_CYCLE",
            BudgetTooLow => "BUDGET_TOO_LOW",
            UnpricedModelUnderBudget => "UNPRICED_MODEL_UNDER_BUDGET",
            FlowChanged => "FLOW_CHANGED",
            AlreadyFinished => "ALREADY_FINISHED",
            ExecutionCancelled => "EXECUTION_CANCELLED",
            InvalidRequest => "INVALID_REQUEST",
            PluginInvalid => "PLUGIN_INVALID",
            PluginNonconformant => "PLUGIN_NONCONFORMANT",
            PluginTooLarge => "PLUGIN_TOO_LARGE",
            PluginCompileTimeout => "PLUGIN_COMPILE_TIMEOUT",
            PluginsReadOnly => "PLUGINS_READ_ONLY",
            PluginError => "PLUGIN_ERROR",
            PluginBusy => "PLUGIN_BUSY",
            HostNotPermitted => "HOST_NOT_PERMITTED",
            DestinationNotAllowed => "DESTINATION_NOT_ALLOWED",
            PluginOutputTooLarge => "PLUGIN_OUTPUT_TOO_LARGE",
            ProviderAuth => "PROVIDER_AUTH",
            ProviderRateLimited => "PROVIDER_RATE_LIMITED",
            ProviderQuotaExceeded => "PROVIDER_QUOTA_EXCEEDED",
            ProviderInvalidRequest => "PROVIDER_INVALID_REQUEST",
            ProviderContextLength => "PROVIDER_CONTEXT_LENGTH",
            ProviderContentFilter => "PROVIDER_CONTENT_FILTER",
            ProviderOverloaded => "PROVIDER_OVERLOADED",
            ProviderServerError => "PROVIDER_SERVER_ERROR",
            ProviderMalformedResponse => "PROVIDER_MALFORMED_RESPONSE",
            ProviderUnreachable => "PROVIDER_UNREACHABLE",
            ProviderStreamInterrupted => "PROVIDER_STREAM_INTERRUPTED",
            ProviderTimeout => "PROVIDER_TIMEOUT",
            StoreUnavailable => "STORE_UNAVAILABLE",
            QueueUnavailable => "QUEUE_UNAVAILABLE",
            KeyUnreadable => "KEY_UNREADABLE",
            Internal => "INTERNAL",
            StoreRejected => "STORE_REJECTED",
            AttemptsExhausted => "ATTEMPTS_EXHAUSTED",
            Interrupted => "INTERRUPTED",
            InternalError => "INTERNAL_ERROR",
            Cancelled => "CANCELLED",
        }
    }

    /// The code with this wire name (as an execution records it).
    pub fn parse(name: &str) -> Option<ErrorCode> {
        ErrorCode::ALL
            .into_iter()
            .find(|code| code.as_str() == name)
    }

    /// The HTTP status it is answered with.
    pub fn status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            MalformedJson
            | InvalidUtf8
            | InvalidField
            | BadBody
            | UnknownProvider
            | UnknownPluginVersion
            | UnknownModel
            | UnknownExtractor
            | MissingProviderKey
            | MissingModel
            | MissingMessages
            | EdgeCycle
            | BudgetTooLow
            | UnpricedModelUnderBudget
            | InvalidRequest
            | PluginInvalid
            | PluginNonconformant
            | PluginCompileTimeout
            | DestinationNotAllowed => StatusCode::BAD_REQUEST,
            Unauthorized => StatusCode::UNAUTHORIZED,
            Forbidden => StatusCode::FORBIDDEN,
            NotFound => StatusCode::NOT_FOUND,
            Conflict | AlreadyFinished | ExecutionCancelled | FlowChanged => StatusCode::CONFLICT,
            BodyTooLarge | PluginTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            RateLimited => StatusCode::TOO_MANY_REQUESTS,
            BudgetExhausted => StatusCode::PAYMENT_REQUIRED,
            IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            PluginError
            | PluginOutputTooLarge
            | HostNotPermitted
            | ProviderAuth
            | ProviderRateLimited
            | ProviderQuotaExceeded
            | ProviderInvalidRequest
            | ProviderContextLength
            | ProviderContentFilter
            | ProviderOverloaded
            | ProviderServerError
            | ProviderMalformedResponse
            | ProviderUnreachable
            | ProviderStreamInterrupted => StatusCode::BAD_GATEWAY,
            ProviderTimeout => StatusCode::GATEWAY_TIMEOUT,
            PluginBusy | PluginsReadOnly | StoreUnavailable | QueueUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            KeyUnreadable | Internal | StoreRejected | AttemptsExhausted | Interrupted
            | InternalError | Cancelled => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_name_is_the_serialized_name() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_value(code).expect("serializes");
            assert_eq!(json, code.as_str());
        }
        assert_eq!(
            ErrorCode::ProviderTimeout.status(),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(
            ErrorCode::PluginBusy.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
