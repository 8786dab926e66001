//! The Lambda front door: the `lambda_runtime` loop over the same [`App`]. The app (settings, S3
//! client) is built once at cold start; each event is parsed strictly into a [`Request`]; the
//! response is the JSON report; errors come back with a type that says whether a retry can help.

use crate::app::App;
use crate::error::Error;
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::Value;
use std::time::{Duration, Instant, SystemTime};

impl From<Error> for Diagnostic {
    fn from(e: Error) -> Self {
        Diagnostic { error_type: e.type_name().into(), error_message: e.message }
    }
}

/// Handles one event that must be done by `deadline`. Public so tests can call it without the
/// runtime.
pub async fn handle(app: &App, event: Value, deadline: Option<Instant>) -> Result<Value, Error> {
    let request = crate::request::from_event(&event)?;
    let response = app.handle_until(request, deadline).await?;
    serde_json::to_value(&response).map_err(|e| Error::transient(e.into()))
}

pub async fn run() -> Result<(), lambda_runtime::Error> {
    let settings = crate::config::Settings::load(None).await.map_err(|e| Box::new(e) as lambda_runtime::Error)?;
    let app = App::new(settings).await;
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        // The invocation's deadline (milliseconds since the epoch), as an Instant: chunks that
        // would not finish before it are not started, and the report says what remains.
        let left = std::time::UNIX_EPOCH + Duration::from_millis(event.context.deadline);
        let deadline = left.duration_since(SystemTime::now()).ok().map(|d| Instant::now() + d);
        handle(app, event.payload, deadline).await
    }))
    .await
}
