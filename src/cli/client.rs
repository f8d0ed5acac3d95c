//! A small client for the local daemon's API, authenticated with the local
//! CLI key (or `PHONERELAY_API_KEY`).

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::LoadedConfig;
use crate::exit::ExitError;
use crate::local_key;

pub const API_KEY_ENV: &str = "PHONERELAY_API_KEY";

pub struct LocalClient {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl LocalClient {
    pub fn new(loaded: &LoadedConfig) -> Result<Self, ExitError> {
        let key = match std::env::var(API_KEY_ENV) {
            Ok(key) if !key.is_empty() => key,
            _ => local_key::read(&loaded.state_dir()).map_err(ExitError::Config)?,
        };
        let listen = &loaded.config.server.listen;
        // A daemon listening on every address is reached on loopback.
        let host = listen
            .replace("0.0.0.0:", "127.0.0.1:")
            .replace("[::]:", "[::1]:");
        Ok(Self {
            base: format!("http://{host}"),
            key,
            http: reqwest::Client::new(),
        })
    }

    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ExitError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| {
            ExitError::Runtime(format!(
                "cannot reach the daemon at {}: {} (is `phonerelay serve` running?)",
                self.base,
                e.without_url()
            ))
        })?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| {
            ExitError::Runtime(format!("the daemon sent an unreadable answer: {e}"))
        })?;
        if status.is_success() {
            serde_json::from_value(body)
                .map_err(|e| ExitError::Runtime(format!("unexpected answer from the daemon: {e}")))
        } else {
            Err(api_error(status, &body))
        }
    }
}

fn api_error(status: StatusCode, body: &Value) -> ExitError {
    let error = &body["error"];
    let code = error["code"].as_str().unwrap_or("error");
    let message = error["message"].as_str().unwrap_or("");
    let field = error["field"]
        .as_str()
        .map(|f| format!(" (field {f})"))
        .unwrap_or_default();
    let text = format!("{status}: {code}: {message}{field}");
    if status.is_client_error() {
        ExitError::Config(text)
    } else {
        ExitError::Runtime(text)
    }
}
