//! A small client for the local daemon's API, authenticated with the local
//! CLI key (or `PHONERELAY_API_KEY`).

use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::Duration;

use reqwest::{Method, RequestBuilder};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::refusal::Refusal;
use crate::config::LoadedConfig;
use crate::exit::ExitError;
use crate::local_key;

pub const API_KEY_ENV: &str = "PHONERELAY_API_KEY";

/// `--timeout`'s default: longer than any answer a working daemon takes (a
/// send waits for its commit), short enough for a script to go on.
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 30;

pub struct LocalClient {
    base: String,
    /// Where the daemon is reached, for messages: its socket or `base`.
    reached_at: String,
    key: String,
    /// The key came from `PHONERELAY_API_KEY`, not the local admin key: it
    /// may lack a scope or be bound to one phone_id.
    key_from_env: bool,
    /// Where the local key is kept, for messages.
    local_key_file: std::path::PathBuf,
    http: reqwest::Client,
    timeout: Duration,
}

impl LocalClient {
    pub fn new(loaded: &LoadedConfig, timeout: Duration) -> Result<Self, ExitError> {
        // Trimmed as the local key is: an EnvironmentFile with CRLF line
        // ends, or `$(cat file)`, leaves a line end a header cannot carry.
        let from_env = std::env::var(API_KEY_ENV).map(|key| key.trim().to_string());
        let local_key_file = local_key::path(&loaded.state_dir());
        let (key, key_from_env) = match from_env {
            Ok(key) if !key.is_empty() => (key, true),
            _ => (
                local_key::read(&loaded.state_dir()).map_err(|e| {
                    // No key yet is a daemon never started here: as for
                    // one that is stopped, starting it puts that right.
                    if e.missing {
                        ExitError::Runtime(e.message)
                    } else {
                        ExitError::Config(e.message)
                    }
                })?,
                false,
            ),
        };
        // Checked here, never echoed: a key a header cannot carry (two
        // keys pasted together, a line end inside) failed at the send as
        // "cannot reach the daemon".
        if !header_safe(&key) {
            return Err(ExitError::Config(if key_from_env {
                format!(
                    "{API_KEY_ENV}: not an API key (it holds a space, a line end or another \
                     character no key has)"
                )
            } else {
                format!(
                    "{} holds no API key (damaged?); restarting the daemon issues a new one",
                    local_key_file.display()
                )
            }));
        }
        let base = format!("http://{}", reached_on(&loaded.config.server.listen));
        let mut http = reqwest::Client::builder()
            .timeout(timeout)
            // Only ever our own daemon: an `http_proxy` in the environment
            // would be handed the bearer key (loopback is not exempt).
            .no_proxy();
        // The local socket when the daemon has one: it is not held up by
        // server.max_connections (local_socket.rs). A key of the user's
        // own goes over TCP when the socket is one they may not open (an
        // operator in the service's group sees it, mode 0600): the socket
        // only ever answers its owner.
        let socket = crate::local_socket::path(&loaded.state_dir());
        let reached_at = if is_socket(&socket) && (!key_from_env || may_open(&socket)) {
            http = http.unix_socket(socket.clone());
            socket.display().to_string()
        } else {
            if !key_from_env {
                local_key_may_go_over_tcp(&loaded.state_dir())?;
            }
            base.clone()
        };
        let http = http
            .build()
            .map_err(|e| ExitError::Runtime(format!("cannot make an HTTP client: {e}")))?;
        Ok(Self {
            base,
            reached_at,
            key,
            key_from_env,
            local_key_file,
            http,
            timeout,
        })
    }

    /// Whether the key is one given in `PHONERELAY_API_KEY`.
    pub fn key_from_env(&self) -> bool {
        self.key_from_env
    }

    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ExitError> {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(body);
        }
        Ok(self.answer(request).await??)
    }

    /// As [`Self::call`], the request carrying `Idempotency-Key: key`; a
    /// failure after the request may have reached the daemon (no answer in
    /// time, one cut off or unreadable, a refusal of its own) is passed
    /// through `may_have_reached`, one that never left (no daemon to
    /// connect to) is not: nothing can have been accepted then.
    pub async fn call_keyed<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &impl Serialize,
        key: &str,
        may_have_reached: impl Fn(ExitError) -> ExitError,
    ) -> Result<T, ExitError> {
        let request = self
            .request(method, path)
            .header("Idempotency-Key", key)
            .json(body);
        match self.answer_with(request, &may_have_reached).await? {
            Ok(answer) => Ok(answer),
            Err(refusal) => Err(may_have_reached(refusal.into())),
        }
    }

    /// GET `path` with `query`, each value encoded as one parameter's
    /// (a value holding `&` or `=` stays one value).
    pub async fn get_query<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, ExitError> {
        let request = self.request(Method::GET, path).query(query);
        Ok(self.answer(request).await??)
    }

    /// GET `path`; a refusal is handed back for the caller to explain.
    pub async fn try_get<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Result<T, Refusal>, ExitError> {
        self.answer(self.request(Method::GET, path)).await
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
    }

    /// Send `request`: the answer read as `T`, or the daemon's refusal.
    async fn answer<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
    ) -> Result<Result<T, Refusal>, ExitError> {
        self.answer_with(request, &|e| e).await
    }

    /// As [`Self::answer`], an error after the request may have reached
    /// the daemon passed through `may_have_reached`.
    async fn answer_with<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
        may_have_reached: &dyn Fn(ExitError) -> ExitError,
    ) -> Result<Result<T, Refusal>, ExitError> {
        let response = request.send().await.map_err(|e| {
            let never_left = e.is_connect() || e.is_builder();
            let error = self.unanswered(e);
            if never_left {
                error
            } else {
                may_have_reached(error)
            }
        })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| {
            may_have_reached(if e.is_timeout() {
                self.unanswered(e)
            } else {
                ExitError::Runtime(format!("the daemon's answer was cut off: {e}"))
            })
        })?;
        // A refusal's body is read by the refusal: a proxy's error page or
        // an empty body still has a status to report.
        if !status.is_success() {
            return Ok(Err(
                Refusal::new(status, body.to_vec()).with_key_hint(self.key_hint())
            ));
        }
        let body: Value = serde_json::from_slice(&body).map_err(|e| {
            may_have_reached(ExitError::Runtime(format!(
                "the daemon sent an unreadable answer: {e}"
            )))
        })?;
        serde_json::from_value(body).map(Ok).map_err(|e| {
            may_have_reached(ExitError::Runtime(format!(
                "unexpected answer from the daemon: {e}"
            )))
        })
    }
}

/// Whether `key` can go in a header as it is: visible ASCII only, as every
/// key `keys create` prints. Its shape is the daemon's to judge.
fn header_safe(key: &str) -> bool {
    key.bytes().all(|b| b.is_ascii_graphic())
}

/// With no local socket, the local key (an admin key) goes to the TCP
/// port only while a daemon holds the state dir's instance lock: the port
/// is then its own. With no daemon, anyone on the box may be listening on
/// that port, and would be handed the key. A daemon keeps its socket for
/// as long as it holds the lock (`local_socket.rs`), so a held lock and no
/// socket is a daemon that could not make one (a file in its place, a
/// state dir path too long for a socket; its log says so), or one older
/// than the socket: those are still reached over TCP. A key of the user's
/// own (`PHONERELAY_API_KEY`) goes where they point it, as with curl.
fn local_key_may_go_over_tcp(state_dir: &Path) -> Result<(), ExitError> {
    match crate::instance_lock::daemon_running(state_dir) {
        Ok(true) => Ok(()),
        Ok(false) => Err(ExitError::Runtime(format!(
            "no daemon is running (state dir {}); start it (systemctl start phonerelay, \
             or phonerelay serve)",
            state_dir.display()
        ))),
        Err(e) => Err(ExitError::Runtime(format!(
            "cannot tell whether a daemon is running (state dir {}): cannot read {}: {e}",
            state_dir.display(),
            crate::instance_lock::lock_path(state_dir).display()
        ))),
    }
}

/// Whether the daemon's local socket is at `path`. Only a socket counts:
/// a file of another kind in its place is an operator's, which the daemon
/// leaves alone and serves TCP only (`local_socket::bind`).
/// Not followed if it is a link, as the daemon does not (`local_socket`):
/// a link in its place points at a socket not known to be the daemon's,
/// and the local key would go there.
fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_socket())
}

/// Whether this user may connect to the socket at `path` (write access).
fn may_open(path: &Path) -> bool {
    rustix::fs::access(path, rustix::fs::Access::WRITE_OK).is_ok()
}

impl LocalClient {
    /// Which key was sent, and what mends a refusal of it.
    fn key_hint(&self) -> String {
        if self.key_from_env {
            format!("the key refused is the one in {API_KEY_ENV}")
        } else {
            format!(
                "the key refused is the local CLI key ({}); restarting the daemon issues a new one",
                self.local_key_file.display()
            )
        }
    }

    fn unanswered(&self, e: reqwest::Error) -> ExitError {
        if e.is_timeout() {
            return ExitError::Runtime(format!(
                "the daemon at {} did not answer within {} s: it may be {} \
                 (see its log); --timeout waits longer",
                self.reached_at,
                self.timeout.as_secs(),
                // The local socket has its own limit; TCP's may be reached.
                if self.reached_at == self.base {
                    "stopped, hung or at server.max_connections"
                } else {
                    "stopped or hung"
                },
            ));
        }
        ExitError::Runtime(format!(
            "cannot reach the daemon at {}: {} (is `phonerelay serve` running?)",
            self.reached_at,
            innermost_cause(&e)
        ))
    }
}

/// What lies under `error`, for a person: reqwest's own text ("error
/// sending request") reads the same for a daemon that is stopped, a socket
/// one left behind and a socket the user may not open; the innermost
/// cause, the system's, tells them apart.
fn innermost_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    match cause.downcast_ref::<std::io::Error>() {
        Some(io) => os_error_text(io),
        None => cause.to_string(),
    }
}

/// An I/O error as the middle of a sentence: the system's message
/// ("Connection refused") in lower case, without its "(os error 111)",
/// which says the same to a program, not to a reader.
fn os_error_text(error: &std::io::Error) -> String {
    let text = error.to_string();
    let Some(code) = error.raw_os_error() else {
        return text;
    };
    let message = text
        .strip_suffix(&format!(" (os error {code})"))
        .unwrap_or(&text);
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

/// Where the CLI reaches a daemon that listens on `listen`: a daemon
/// listening on every address, on loopback. The address as a whole, not a
/// part of it: `10.0.0.0:8686` is not `0.0.0.0:8686` (replaced as text, it
/// read `1127.0.0.1:8686`).
fn reached_on(listen: &str) -> String {
    match listen.parse::<std::net::SocketAddr>() {
        Ok(addr) if addr.ip().is_unspecified() => {
            let loopback: std::net::IpAddr = if addr.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            };
            std::net::SocketAddr::new(loopback, addr.port()).to_string()
        }
        _ => listen.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::reached_on;

    #[test]
    fn only_an_unspecified_address_is_reached_on_loopback() {
        assert_eq!(reached_on("0.0.0.0:8686"), "127.0.0.1:8686");
        assert_eq!(reached_on("[::]:8686"), "[::1]:8686");
        assert_eq!(reached_on("10.0.0.0:8686"), "10.0.0.0:8686");
        assert_eq!(reached_on("192.0.2.7:8686"), "192.0.2.7:8686");
        assert_eq!(reached_on("127.0.0.1:8686"), "127.0.0.1:8686");
    }
}
