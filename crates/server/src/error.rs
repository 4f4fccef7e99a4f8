//! Errors as TEI answers them: `{"error": str, "error_type": str}` with the status of its type.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// TEI's error types (router/src/http/types.rs `ErrorType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ErrorType {
    /// The model is not loaded (yet), or the server is shutting down: 503.
    Unhealthy,
    /// The model failed, or a route the model cannot serve: 424 (as TEI); a request that
    /// panicked: 500.
    Backend,
    /// Past `--max-concurrent-requests`: 429.
    Overloaded,
    /// Bad JSON, wrong types, too many or too long inputs, bad options: 422 (413 for a body
    /// over `--payload-limit`, 400 for a body that is not JSON).
    Validation,
    /// The tokenizer refused an input: 422.
    Tokenizer,
    /// An empty input: 400.
    Empty,
}

/// An error answer: its status, message and type.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for the client.
    pub message: String,
    /// TEI's type of the error.
    pub error_type: ErrorType,
    /// The `err` label of `te_request_failure`.
    pub metric_label: &'static str,
}

impl ApiError {
    /// An error with its status, type and message; its metric label follows its type (the
    /// constructors below name TEI's finer labels).
    pub fn new(status: StatusCode, error_type: ErrorType, message: impl Into<String>) -> Self {
        let metric_label = match error_type {
            ErrorType::Unhealthy => "unhealthy",
            ErrorType::Backend => "backend",
            ErrorType::Overloaded => "overloaded",
            ErrorType::Validation => "validation",
            ErrorType::Tokenizer => "tokenization",
            ErrorType::Empty => "empty",
        };
        Self {
            status,
            message: message.into(),
            error_type,
            metric_label,
        }
    }

    fn labelled(mut self, metric_label: &'static str) -> Self {
        self.metric_label = metric_label;
        self
    }

    /// 422 `Validation`.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Validation,
            message,
        )
    }

    /// 400 `Validation`: a body that is not JSON.
    pub fn bad_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorType::Validation, message)
    }

    /// 413 `Validation`: a body over `--payload-limit`.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorType::Validation,
            format!("the request body is larger than the payload limit ({limit} bytes)"),
        )
    }

    /// 400 `Empty`.
    pub fn empty(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorType::Empty, message)
    }

    /// 422 `Tokenizer`.
    pub fn tokenizer(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Tokenizer,
            message,
        )
    }

    /// 429 `Overloaded`.
    pub fn overloaded(limit: usize) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorType::Overloaded,
            format!(
                "Model is overloaded: more than {limit} inputs in flight (--max-concurrent-requests)"
            ),
        )
    }

    /// 503 `Unhealthy`.
    pub fn unhealthy(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Unhealthy,
            message,
        )
    }

    /// 424 `Backend`: a route the loaded model's type cannot serve.
    pub fn unsupported(route: &str, task: &str) -> Self {
        Self::new(
            StatusCode::FAILED_DEPENDENCY,
            ErrorType::Backend,
            format!("`{route}` is not available for this model (task `{task}`)"),
        )
        .labelled("model_type")
    }

    /// 424 `Backend`: the model failed (TEI's status for backend errors).
    pub fn model_failed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FAILED_DEPENDENCY, ErrorType::Backend, message).labelled("inference")
    }

    /// 500 `Backend`: a panic, or the model thread gone.
    pub fn backend(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::Backend,
            message,
        )
    }

    /// 401, outside TEI's types (TEI answers a bare 401).
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorType::Validation,
            "missing or wrong `Authorization: Bearer` key",
        )
        .labelled("unauthorized")
    }

    /// The `err` label of `te_request_failure`, as TEI names them (`validation`,
    /// `tokenization`, `empty`, `overloaded`, `model_type`, `inference`; `backend` for a panic).
    pub fn metric_label(&self) -> &'static str {
        self.metric_label
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": self.message, "error_type": self.error_type})
    }

    /// The answer of the OpenAI-compatible routes (TEI's `OpenAICompatErrorResponse`):
    /// `{"message", "code", "type"}`.
    pub fn openai_response(&self) -> Response {
        let body = serde_json::json!({
            "message": self.message,
            "code": self.status.as_u16(),
            "type": self.error_type,
        });
        (self.status, Json(body)).into_response()
    }
}

impl From<oxformer_pipelines::Error> for ApiError {
    fn from(error: oxformer_pipelines::Error) -> Self {
        let message = error.to_string();
        match error {
            oxformer_pipelines::Error::Tokenizer(_) => Self::tokenizer(message),
            error if error.is_user_error() => Self::validation(message),
            _ => Self::model_failed(message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}
