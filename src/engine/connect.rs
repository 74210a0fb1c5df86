//! Connecting before any API call: the client is built and its first token obtained, so
//! bad credentials, an untrusted certificate or an unreachable proxy stop a command in its
//! first second, with a hint saying what to look at.

use crate::api::{Client, ClientConfig};
use crate::error::AppError;

/// The client with its first token; `None` when there is nothing to connect (a dry run).
pub async fn connect(config: Option<&ClientConfig>) -> Result<Option<Client>, AppError> {
    let Some(config) = config else {
        return Ok(None);
    };
    let client = Client::new(config.clone())
        .map_err(|e| AppError::Fatal(format!("cannot set up HTTPS: {e}")))?;
    client.authenticate().await.map_err(|e| {
        let message = e.to_string();
        let hint = crate::api::tls::untrusted_certificate_hint(&message)
            .map(str::to_owned)
            .or_else(|| proxy_hint(&message, &config.base_url));
        match hint {
            Some(hint) => AppError::Fatal(format!("{message}\n{hint}")),
            None => AppError::Fatal(message),
        }
    })?;
    Ok(Some(client))
}

/// When a connection failed and a proxy variable applies, says which variable (never its
/// value: it may hold the proxy's password), so the operator looks at the proxy.
fn proxy_hint(message: &str, base_url: &str) -> Option<String> {
    if !message.contains("could not connect") {
        return None;
    }
    // Plain http (loopback only) never goes through a proxy (see `api::Client::new`).
    if !base_url.starts_with("https://") {
        return None;
    }
    let names = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"];
    let name = names
        .iter()
        .find(|name| crate::config::process_env(name).is_some())?;
    Some(format!(
        "requests go through the proxy set in {name} (unless NO_PROXY matches the host): \
         check that the proxy is reachable and accepts the credentials in its URL"
    ))
}
