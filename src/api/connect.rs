//! The Connect calls: create a device onboarding session (a Connect link), list a user's
//! heat pumps, assign a heat pump to a building. They share [`Client::call`], so every
//! attempt passes the one gate, retries, token handling and breaker of the run.
//!
//! A session POST is not idempotent, but an extra session is only an extra link that
//! expires by itself (by the end of the next day), never a lasting duplicate. So, unlike a
//! building POST, an ambiguous failure (timeout, dropped connection, 5xx) is retried.
//! Session ids and links are capabilities: nothing here logs a response body on success,
//! and the session path is never requested with an id (the debug log shows URLs).

use reqwest::Method;
use serde::Deserialize;
use uuid::Uuid;

use super::{CallError, Client, Failure, Request};

/// The error text with every URL and session reference cut out. Error texts quote the
/// server's error body, which goes to stderr (the `-vv` request log too), the summary and
/// the checkpoint's `error`; a server that echoed a link there must not leak it (links are
/// capabilities). [`Client`] applies it to every error body it reads, whatever the call.
pub fn redact_links(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            let lower = word.to_ascii_lowercase();
            if lower.contains("://") || lower.contains("onboarding_session_id") {
                "[link removed]"
            } else {
                word
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A session the server created.
#[derive(Clone, Debug, Deserialize)]
pub struct Session {
    /// The session id.
    pub id: Uuid,
    /// The Connect link to mail to the customer.
    pub authentication_url: String,
    /// Last day the link works (`YYYY-MM-DD`).
    pub expiration_date: String,
}

/// A heat pump of a user, as listed.
#[derive(Clone, Debug, Deserialize)]
pub struct HeatPump {
    /// Its id.
    pub id: Uuid,
    /// The building it is assigned to.
    #[serde(default)]
    pub building: Option<Uuid>,
    /// Whether the customer connected it.
    #[serde(default)]
    pub is_authenticated: bool,
}

impl Client {
    /// `POST /api/partners/v2.0/device-onboarding`: a 2xx without a readable session is an
    /// ambiguous failure (a session may exist; it expires by itself).
    pub async fn create_session(&self, body: &serde_json::Value) -> Result<Session, CallError> {
        let root = self
            .api
            .rsplit_once("/org/")
            .map_or(self.api.as_str(), |(root, _)| root);
        let request = Request {
            method: Method::POST,
            url: format!("{root}/device-onboarding"),
            target: None,
            body: Some(body),
            // An extra session is harmless (see the module header): retry like a PUT.
            idempotent: true,
        };
        let (status, bytes) = self.call(&request).await?;
        serde_json::from_slice::<Session>(&bytes).map_err(|_| CallError {
            failure: Failure::Ambiguous,
            status: Some(status),
            // The body may hold a link: never quote it.
            message: format!("the server answered {status} without a session id and link"),
        })
    }

    /// `GET .../users/{user_id}/heat-pumps`.
    pub async fn list_heat_pumps(&self, user: Uuid) -> Result<Vec<HeatPump>, CallError> {
        let url = format!("{}/users/{user}/heat-pumps", self.api);
        self.get_json(
            url,
            "the list of heat pumps was not a JSON array of heat pumps",
        )
        .await
    }

    /// `PUT .../users/{user_id}/heat-pumps/{id}` with `{"building_id": ...}` (partial, idempotent).
    pub async fn assign_heat_pump(
        &self,
        user: Uuid,
        heat_pump: Uuid,
        building: Uuid,
    ) -> Result<(), CallError> {
        let body = serde_json::json!({ "building_id": building });
        let request = Request {
            method: Method::PUT,
            url: format!("{}/users/{user}/heat-pumps/{heat_pump}", self.api),
            target: None,
            body: Some(&body),
            idempotent: true,
        };
        self.call(&request).await.map(|_| ())
    }
}
