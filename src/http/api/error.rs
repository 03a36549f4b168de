//! The one JSON error shape of the API, `{"error": {"code", "message"}}`,
//! with stable codes clients may branch on, and the extractors that turn
//! axum's own rejections (bad JSON, body too large, bad path) into it.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The stable error codes. Their strings never change; new ones may be
/// added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// The body is not JSON, or not the JSON this endpoint takes (400).
    BadJson,
    /// A field, path or query value is out of range or malformed (400).
    InvalidRequest,
    /// No or an unknown bearer token (401).
    Unauthenticated,
    /// The token lacks the scope this route needs (403).
    Forbidden,
    /// No such user, address, route or record (404).
    NotFound,
    /// The method is not allowed on this route (405).
    MethodNotAllowed,
    /// The body is larger than the limit (413).
    PayloadTooLarge,
    /// The body is not `application/json` (415).
    UnsupportedMediaType,
    /// The directory or the store cannot answer; retry later (503).
    Unavailable,
    /// The feature is not configured here (e.g. no `[policy]`) (501).
    NotConfigured,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BadJson => "bad_json",
            Code::InvalidRequest => "invalid_request",
            Code::Unauthenticated => "unauthenticated",
            Code::Forbidden => "forbidden",
            Code::NotFound => "not_found",
            Code::MethodNotAllowed => "method_not_allowed",
            Code::PayloadTooLarge => "payload_too_large",
            Code::UnsupportedMediaType => "unsupported_media_type",
            Code::Unavailable => "unavailable",
            Code::NotConfigured => "not_configured",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Code::BadJson | Code::InvalidRequest => StatusCode::BAD_REQUEST,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::Forbidden => StatusCode::FORBIDDEN,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Code::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::NotConfigured => StatusCode::NOT_IMPLEMENTED,
        }
    }
}

/// An API error: a code and a message for humans. Messages never echo a
/// password or a token.
#[derive(Debug)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'static str,
    message: &'a str,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(Code::NotFound, what)
    }

    pub fn invalid(what: impl Into<String>) -> Self {
        Self::new(Code::InvalidRequest, what)
    }

    /// An outage; the detail goes to the log, the client gets a plain
    /// sentence.
    pub fn unavailable(what: &str, detail: &dyn std::fmt::Display) -> Self {
        tracing::warn!(error = %detail, "{what} unavailable for an API request");
        Self::new(Code::Unavailable, format!("the {what} cannot answer right now; try again later"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body { error: Inner { code: self.code.as_str(), message: &self.message } };
        let mut response = (self.code.status(), Json(body)).into_response();
        if self.code == Code::Unauthenticated {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::MissingJsonContentType(_) => {
                ApiError::new(Code::UnsupportedMediaType, "send the body as Content-Type: application/json")
            }
            JsonRejection::JsonDataError(e) => ApiError::new(Code::BadJson, e.body_text()),
            JsonRejection::JsonSyntaxError(e) => ApiError::new(Code::BadJson, e.body_text()),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => too_large(),
            other => ApiError::new(Code::BadJson, other.body_text()),
        }
    }
}

pub fn too_large() -> ApiError {
    ApiError::new(Code::PayloadTooLarge, format!("the body is larger than {} bytes", super::super::BODY_LIMIT))
}

/// `Json<T>` whose rejections use the API error shape.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Ok(ApiJson(Json::<T>::from_request(req, state).await?.0))
    }
}

/// `Path<T>` whose rejections use the API error shape.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e: PathRejection| ApiError::invalid(e.body_text()))
    }
}

/// `Query<T>` whose rejections use the API error shape.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e: QueryRejection| ApiError::invalid(e.body_text()))
    }
}
