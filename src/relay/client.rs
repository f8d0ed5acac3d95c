//! HTTP to the relay: bearer-authenticated JSON, errors classified into
//! what an operator or a retry loop can act on. Errors never contain the
//! key (reqwest errors name the URL, never the headers).

use std::time::Duration;

use reqwest::StatusCode;
use serde::Serialize;
use serde_json::Value;

use super::settings::RelaySettings;

/// The relay-issued bearer key; its Debug and Display never show it.
#[derive(Clone)]
pub struct RelayKey(String);

impl RelayKey {
    pub fn new(key: String) -> Self {
        Self(key)
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for RelayKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RelayKey(<hidden>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    #[error("cannot reach the relay at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("TLS with the relay at {url} failed: {reason}")]
    Tls { url: String, reason: String },
    #[error("the relay at {url} did not answer in time")]
    Timeout { url: String },
    #[error("the relay answered HTTP {status} to {path}: {code}: {message}")]
    Http {
        path: String,
        status: u16,
        code: String,
        message: String,
        retry_after_ms: Option<u64>,
    },
    #[error("the relay sent an unreadable answer to {path}: {reason}")]
    BadAnswer { path: String, reason: String },
    /// A 2xx answer larger than the bridge reads, from a request whose
    /// answer it needs whole ([`RelayClient::poll`]).
    #[error("the relay's answer to {path} is larger than the {limit} bytes the bridge reads")]
    TooLarge { path: String, limit: usize },
}

/// 4xx answers about the relay's route rather than the request: no such
/// path (404: a reverse proxy answers it while the relay app restarts, or
/// `relay.paths` is wrong), not that method there (405), not this server
/// (421), and "too early, try again" (425). Every message would get the
/// same answer, so none is dropped for it: retried, holding the link.
const ROUTE_NOT_THERE: [u16; 4] = [404, 405, 421, 425];

impl RelayError {
    /// A rejection retrying cannot fix: 4xx other than 401/403 (the key,
    /// fixed by re-pairing, not by dropping messages), 408, 429 and the
    /// [`ROUTE_NOT_THERE`] answers.
    pub fn is_permanent(&self) -> bool {
        matches!(self, RelayError::Http { status, .. }
            if (400..500).contains(status)
                && !matches!(status, 401 | 403 | 408 | 429)
                && !ROUTE_NOT_THERE.contains(status))
    }

    pub fn is_key_rejected(&self) -> bool {
        matches!(
            self,
            RelayError::Http {
                status: 401 | 403,
                ..
            }
        )
    }

    /// Short stable code for the store and the API.
    pub fn code(&self) -> String {
        match self {
            RelayError::Unreachable { .. } => "relay_unreachable".into(),
            RelayError::Tls { .. } => "relay_tls".into(),
            RelayError::Timeout { .. } => "relay_timeout".into(),
            RelayError::Http { status, .. } => format!("relay_http_{status}"),
            RelayError::BadAnswer { .. } => "relay_bad_answer".into(),
            RelayError::TooLarge { .. } => "relay_answer_too_large".into(),
        }
    }

    /// What went wrong, without the URL or path of the request that met
    /// it: the heartbeat, the forwarder and the status reporter meet one
    /// outage each on its own path, and that is one error, not three.
    pub fn trouble(&self) -> String {
        match self {
            RelayError::Unreachable { reason, .. } => format!("unreachable: {reason}"),
            RelayError::Tls { reason, .. } => format!("TLS failed: {reason}"),
            RelayError::Timeout { .. } => "no answer in time".into(),
            RelayError::Http {
                status,
                code,
                message,
                ..
            } => format!("HTTP {status}: {code}: {message}"),
            RelayError::BadAnswer { reason, .. } => format!("unreadable answer: {reason}"),
            RelayError::TooLarge { limit, .. } => {
                format!("an answer larger than the {limit} bytes the bridge reads")
            }
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RelayError::Http { retry_after_ms, .. } => retry_after_ms.map(Duration::from_millis),
            _ => None,
        }
    }

    /// The relay itself could not be reached (as opposed to refusing one
    /// request): no point trying the next message now. A redirect (3xx)
    /// counts: it says where the relay is, not what is wrong with this
    /// message, so the next one would be redirected too.
    pub fn is_link_down(&self) -> bool {
        match self {
            RelayError::Unreachable { .. }
            | RelayError::Tls { .. }
            | RelayError::Timeout { .. } => true,
            RelayError::Http { status, .. } => {
                (300..400).contains(status)
                    || *status >= 500
                    || matches!(status, 401 | 403 | 429)
                    || ROUTE_NOT_THERE.contains(status)
            }
            RelayError::BadAnswer { .. } | RelayError::TooLarge { .. } => false,
        }
    }
}

/// What to make of a 2xx answer larger than the bridge reads.
#[derive(Clone, Copy)]
enum WhenCut {
    /// Taken as an empty answer: the request was taken all the same.
    Empty,
    /// [`RelayError::TooLarge`]: the caller needs what it says.
    Refuse,
}

/// The slowest upload the timeout allows for: a file gets a second more
/// than other requests per this many bytes (a bridge on a mobile link).
pub const UPLOAD_BYTES_PER_SECOND: u64 = 64 * 1024;

/// One file for [`RelayClient::upload`].
pub struct Upload {
    /// The file, read as it is sent.
    pub body: reqwest::Body,
    /// Its length, sent as Content-Length.
    pub size: u64,
    /// `application/octet-stream` when the channel gave none.
    pub content_type: String,
    pub filename: Option<String>,
    /// The media id: a repeat of the upload gets the first answer.
    pub idempotency_key: String,
    pub phone_id: String,
}

pub struct RelayClient {
    base: String,
    key: RelayKey,
    http: reqwest::Client,
    request_timeout: Duration,
    /// The most of a 2xx answer read ([`answer_cap`]).
    answer_cap: usize,
}

impl RelayClient {
    pub fn new(settings: &RelaySettings) -> Result<Self, RelayError> {
        let mut client = Self::with(
            &settings.url,
            settings.key.clone(),
            Duration::from_secs(settings.config.request_timeout_seconds),
        )?;
        client.answer_cap = answer_cap(settings.config.poll_max_jobs);
        Ok(client)
    }

    pub fn with(url: &str, key: RelayKey, request_timeout: Duration) -> Result<Self, RelayError> {
        let http = reqwest::Client::builder()
            .connect_timeout(request_timeout)
            // Following a 301/302/303 turns the POST into a GET without its
            // body, and the page it lands on answers 200: a message counted
            // as taken that the relay never stored. A redirect is shown
            // (with its Location) and retried instead; see `post`.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("phonerelay/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RelayError::Unreachable {
                url: url.to_string(),
                reason: format!("cannot build an HTTP client: {e}"),
            })?;
        Ok(Self {
            base: url.trim_end_matches('/').to_string(),
            key,
            http,
            request_timeout,
            answer_cap: MAX_ANSWER_BYTES,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// POST JSON; a 2xx answer's JSON body, or `null` when it is empty or
    /// not JSON: any 2xx means the relay took the request (`200 OK` with
    /// the body `OK` is a success), so a caller that needs fields from the
    /// body checks them itself. A 3xx is not followed: it is an error. A
    /// 2xx body larger than [`answer_cap`] is not read whole: `null` too.
    pub async fn post(
        &self,
        path: &str,
        body: &impl Serialize,
        idempotency_key: Option<&str>,
        timeout: Option<Duration>,
    ) -> Result<Value, RelayError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.json_post(&url, body, timeout.unwrap_or(self.request_timeout));
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        self.answer(path, &url, request).await
    }

    /// POST a poll for jobs: as [`Self::post`], but an answer larger than
    /// the bridge reads is [`RelayError::TooLarge`], not an empty one, so
    /// that the poller can ask for fewer jobs.
    pub async fn poll(
        &self,
        path: &str,
        body: &impl Serialize,
        timeout: Duration,
    ) -> Result<Value, RelayError> {
        let url = format!("{}{path}", self.base);
        let request = self.json_post(&url, body, timeout);
        self.answer_or(path, &url, request, WhenCut::Refuse).await
    }

    /// A POST of `body` as JSON to `url`, with the relay key.
    fn json_post(
        &self,
        url: &str,
        body: &impl Serialize,
        timeout: Duration,
    ) -> reqwest::RequestBuilder {
        self.http
            .post(url)
            .bearer_auth(self.key.expose())
            .timeout(timeout)
            .json(body)
    }

    /// POST a file's bytes as they are (`POST {media}`), its type as the
    /// Content-Type, its name percent-encoded in `X-Filename`, and its id as
    /// the Idempotency-Key; answered as [`Self::post`] is. The timeout is
    /// the request timeout and a second per [`UPLOAD_BYTES_PER_SECOND`].
    pub async fn upload(&self, path: &str, upload: Upload) -> Result<Value, RelayError> {
        let url = format!("{}{path}", self.base);
        let seconds = upload.size / UPLOAD_BYTES_PER_SECOND;
        let mut request = self
            .http
            .post(&url)
            .bearer_auth(self.key.expose())
            .timeout(self.request_timeout + Duration::from_secs(seconds))
            .header(reqwest::header::CONTENT_TYPE, upload.content_type)
            // Known, so the file goes with a length rather than chunked.
            .header(reqwest::header::CONTENT_LENGTH, upload.size)
            .header("Idempotency-Key", upload.idempotency_key)
            .header("X-Phone-Id", upload.phone_id);
        if let Some(name) = upload.filename {
            request = request.header("X-Filename", crate::media::percent_encode(&name));
        }
        self.answer(path, &url, request.body(upload.body)).await
    }

    /// Send `request` and read its answer: a 2xx answer's JSON body (or
    /// `null`), every other answer an error.
    async fn answer(
        &self,
        path: &str,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Value, RelayError> {
        self.answer_or(path, url, request, WhenCut::Empty).await
    }

    /// As [`Self::answer`], a 2xx answer larger than the bridge reads made
    /// what `when_cut` says.
    async fn answer_or(
        &self,
        path: &str,
        url: &str,
        request: reqwest::RequestBuilder,
        when_cut: WhenCut,
    ) -> Result<Value, RelayError> {
        let response = request.send().await.map_err(|e| classify(url, e))?;
        let status = response.status();
        let retry_after_ms = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            // An absurd value must not overflow (a panic in a debug build,
            // a short wait in a release one); the backoff caps it anyway.
            .map(|s| s.saturating_mul(1000));
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            return Err(self.redirect_error(path, status, location, retry_after_ms));
        }
        let cap = if status.is_success() {
            self.answer_cap
        } else {
            MAX_REFUSAL_BYTES
        };
        let (body, cut) = read_capped(response, cap)
            .await
            .map_err(|e| classify(url, e))?;
        if status.is_success() {
            if cut && matches!(when_cut, WhenCut::Refuse) {
                return Err(RelayError::TooLarge {
                    path: path.to_string(),
                    limit: self.answer_cap,
                });
            }
            if cut {
                // Taken all the same: a request whose answer the bridge
                // needs finds no fields in it and says so.
                tracing::warn!(
                    path,
                    limit = self.answer_cap,
                    "the relay's answer is larger than the bridge reads; taken as an empty one"
                );
                return Ok(Value::Null);
            }
            return Ok(serde_json::from_slice(&body).unwrap_or(Value::Null));
        }
        let text = String::from_utf8_lossy(&body);
        Err(http_error(path, status, &text, retry_after_ms, |said| {
            self.without_key(said)
        }))
    }

    /// `said` with the relay key cut out: a relay (or a proxy before it)
    /// may echo the key it refused, and what it said goes to the log, the
    /// link's last error and dead letters. Cut out before anything is
    /// shortened: a key cut in two by the shortening no longer matches.
    fn without_key(&self, said: &str) -> String {
        let key = self.key.expose();
        // (`replace` with an empty pattern would insert everywhere.)
        if key.is_empty() {
            said.to_string()
        } else {
            said.replace(key, "<hidden>")
        }
    }

    /// A 3xx: the relay did not take the request. Names the Location so
    /// the operator can fix `relay.url`; the Location comes from the other
    /// side, so the key is cut out of it should it be echoed there.
    fn redirect_error(
        &self,
        path: &str,
        status: StatusCode,
        location: Option<String>,
        retry_after_ms: Option<u64>,
    ) -> RelayError {
        let location = location.map(|l| self.without_key(&l));
        let message = match location {
            Some(location) => format!(
                "redirected to {}; redirects are not followed (set relay.url to the relay's own address)",
                truncate(&location)
            ),
            None => "redirected without a Location; redirects are not followed".to_string(),
        };
        RelayError::Http {
            path: path.to_string(),
            status: status.as_u16(),
            code: "redirect".into(),
            message,
            retry_after_ms,
        }
    }
}

/// The least of the most of a 2xx answer read ([`answer_cap`]). More is
/// no relay's answer (a wrong `relay.url`, a broken proxy streaming a
/// download), and would be held in memory whole.
pub const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// The most of a 2xx answer read by a bridge that polls for up to
/// `poll_max_jobs` jobs: room for each job as large as the API takes a
/// send by default (`DEFAULT_MAX_BODY_BYTES`), and at least
/// [`MAX_ANSWER_BYTES`]. `poll_max_jobs` is at most 1,000.
pub fn answer_cap(poll_max_jobs: u32) -> usize {
    let jobs = poll_max_jobs as usize * crate::config::DEFAULT_MAX_BODY_BYTES;
    jobs.max(MAX_ANSWER_BYTES)
}

/// The most of a refusal read: only the start of what it says is shown.
const MAX_REFUSAL_BYTES: usize = 64 * 1024;

/// `response`'s body, at most `cap` bytes of it, and whether there was
/// more (then the rest is not read: the connection is dropped).
async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = cap - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

/// At most 300 characters of what the relay said.
fn truncate(text: &str) -> String {
    if text.chars().count() > 300 {
        text.chars().take(300).collect::<String>() + "…"
    } else {
        text.to_string()
    }
}

/// The error a refusal with body `text` is; what the relay said passes
/// through `hide` (which cuts out the key) before it is shortened.
fn http_error(
    path: &str,
    status: StatusCode,
    text: &str,
    retry_after_ms: Option<u64>,
    hide: impl Fn(&str) -> String,
) -> RelayError {
    let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let error = &body["error"];
    let code = truncate(&hide(
        error["code"]
            .as_str()
            .or_else(|| error.as_str())
            .unwrap_or("http_error"),
    ));
    let message = truncate(&hide(
        error["message"]
            .as_str()
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("")),
    ));
    RelayError::Http {
        path: path.to_string(),
        status: status.as_u16(),
        code,
        message,
        retry_after_ms,
    }
}

/// Tell a TLS failure from a refused connection from a timeout by
/// reading the error chain, without the URL reqwest puts in its own
/// message: a relay at `https://mtls-relay.example`, or a path with
/// "certificate" in it, that refuses connections is unreachable, not a
/// TLS failure (which `pair` answers with certificate advice). A
/// connection that timed out is the relay unreachable (a host stopped, or
/// a firewall dropping its packets), not a request that ran past its
/// timeout: an upload's timeout is longer than the connect's, and counted
/// as a slow upload, it had every file waiting given up after an hour's
/// outage.
fn classify(url: &str, error: reqwest::Error) -> RelayError {
    let url = url.to_string();
    if error.is_connect() && error.is_timeout() {
        return RelayError::Unreachable {
            url,
            reason: "no answer to the connection in time".into(),
        };
    }
    if error.is_timeout() {
        return RelayError::Timeout { url };
    }
    let error = error.without_url();
    let mut chain = Vec::new();
    let mut source: Option<&dyn std::error::Error> = Some(&error);
    while let Some(e) = source {
        chain.push(e.to_string());
        source = e.source();
    }
    let deepest = chain
        .iter()
        .rev()
        .find(|m| !m.is_empty())
        .cloned()
        .unwrap_or_default();
    let all = chain.join(": ").to_ascii_lowercase();
    let tls = [
        "tls",
        "certificate",
        "corrupt message",
        "handshake",
        "invalidcontenttype",
        "peer is incompatible",
    ]
    .iter()
    .any(|word| all.contains(word));
    if tls {
        RelayError::Tls {
            url,
            reason: deepest,
        }
    } else {
        RelayError::Unreachable {
            url,
            reason: deepest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server on loopback answering every request with `head` and then
    /// a body that never ends; its address.
    async fn endless_body(head: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = socket.read(&mut request).await;
                    socket.write_all(head.as_bytes()).await?;
                    let chunk = vec![b'x'; 64 * 1024];
                    loop {
                        socket.write_all(&chunk).await?;
                    }
                    #[allow(unreachable_code)]
                    Ok::<_, std::io::Error>(())
                });
            }
        });
        format!("http://{addr}")
    }

    /// A refused connection to a relay whose address has TLS words in it
    /// is unreachable: the words of the URL in reqwest's message are not
    /// the failure's.
    #[tokio::test]
    async fn a_refused_connection_is_unreachable_whatever_words_its_url_has() {
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let base = format!("http://{addr}/mtls-certificate");
        let client =
            RelayClient::with(&base, RelayKey::new("k".into()), Duration::from_secs(5)).unwrap();
        let e = client
            .post("/tls/handshake", &serde_json::json!({}), None, None)
            .await
            .unwrap_err();
        assert!(matches!(&e, RelayError::Unreachable { .. }), "{e:?}");
    }

    /// A relay host that drops the connection's packets (here its accept
    /// queue is full, so the kernel drops the handshake, as a stopped host
    /// behind a firewall does): the connect times out, which is the relay
    /// unreachable, however long the request itself may take (an upload's
    /// timeout is longer than the connect's).
    #[tokio::test]
    async fn a_connect_that_times_out_is_unreachable_not_a_slow_request() {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(0).unwrap();
        let addr = listener.local_addr().unwrap();
        // Never accepted: once the queue holds them, further handshakes
        // get no answer.
        let mut queued = Vec::new();
        for _ in 0..4 {
            let connect = tokio::net::TcpStream::connect(addr);
            if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_millis(200), connect).await
            {
                queued.push(stream);
            }
        }
        let base = format!("http://{addr}");
        let client =
            RelayClient::with(&base, RelayKey::new("k".into()), Duration::from_millis(300))
                .unwrap();
        let e = client
            .post(
                "/p",
                &serde_json::json!({}),
                None,
                Some(Duration::from_secs(20)),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&e, RelayError::Unreachable { reason, .. } if reason.contains("in time")),
            "{e:?}"
        );
        drop(queued);
    }

    #[test]
    fn the_answer_limit_grows_with_the_jobs_a_poll_asks_for() {
        assert_eq!(answer_cap(1), MAX_ANSWER_BYTES);
        assert_eq!(answer_cap(50), MAX_ANSWER_BYTES);
        assert_eq!(answer_cap(1000), 1000 * 256 * 1024);
    }

    /// A "relay" that streams without end, in a 2xx answer or a refusal:
    /// the answer is read up to its limit and then given up, not held in
    /// memory until the request's timeout (which the test's 60 s would
    /// reach long after the limits are).
    #[tokio::test]
    async fn an_endless_answer_is_read_up_to_its_limit_only() {
        let ok = endless_body("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n").await;
        let client =
            RelayClient::with(&ok, RelayKey::new("k".into()), Duration::from_secs(60)).unwrap();
        let started = std::time::Instant::now();
        let taken = client.post("/p", &serde_json::json!({}), None, None).await;
        assert_eq!(taken, Ok(Value::Null));
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );

        let refused = endless_body("HTTP/1.1 500 Internal Server Error\r\n\r\n").await;
        let client =
            RelayClient::with(&refused, RelayKey::new("k".into()), Duration::from_secs(60))
                .unwrap();
        let e = client
            .post("/p", &serde_json::json!({}), None, None)
            .await
            .unwrap_err();
        assert!(matches!(&e, RelayError::Http { status: 500, .. }), "{e:?}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_redirect_names_its_location_without_the_key_and_is_retried_holding_the_link() {
        let key = "k-0123456789";
        let client = RelayClient::with(
            "http://relay.test",
            RelayKey::new(key.into()),
            Duration::from_secs(1),
        )
        .unwrap();
        let e = client.redirect_error(
            "/api/v1/messages",
            StatusCode::FOUND,
            Some(format!("https://relay.test/login?token={key}")),
            None,
        );
        let shown = e.to_string();
        assert!(shown.contains("302"), "{shown}");
        assert!(
            shown.contains("https://relay.test/login?token=<hidden>"),
            "{shown}"
        );
        assert!(!shown.contains(key), "{shown}");
        assert!(!e.is_permanent());
        assert!(e.is_link_down());
        let bare = client.redirect_error("/p", StatusCode::MOVED_PERMANENTLY, None, None);
        assert!(bare.to_string().contains("without a Location"), "{bare}");
    }

    /// A refusal that echoes the key near the 300-character cut, in its
    /// message and in its code: no part of the key is kept. (Cut first,
    /// the message kept the key's first characters, which then no longer
    /// matched the key.)
    #[test]
    fn a_key_echoed_at_the_cut_leaves_no_part_of_it() {
        let key = "k-0123456789abcdefghijklmnopqrstuvwxyzABCD";
        let client = RelayClient::with(
            "http://relay.test",
            RelayKey::new(key.into()),
            Duration::from_secs(1),
        )
        .unwrap();
        let said = format!("{}{key}", "a".repeat(280));
        let body = serde_json::json!({"error": {"code": said, "message": said}}).to_string();
        let e = http_error("/p", StatusCode::UNAUTHORIZED, &body, None, |s| {
            client.without_key(s)
        });
        let RelayError::Http { code, message, .. } = &e else {
            panic!("{e:?}")
        };
        for shown in [code, message] {
            assert!(!shown.contains(&key[..12]), "{shown}");
            assert!(shown.chars().count() <= 301, "{}", shown.len());
        }
    }

    fn http(status: u16) -> RelayError {
        RelayError::Http {
            path: "/api/v1/messages".into(),
            status,
            code: "x".into(),
            message: "y".into(),
            retry_after_ms: None,
        }
    }

    /// A missing route (a proxy's 404 while the relay restarts) holds the
    /// link instead of dropping every message sent meanwhile; a refusal of
    /// the request itself is permanent.
    #[test]
    fn answers_about_the_route_hold_the_link_and_refusals_of_the_request_are_permanent() {
        for status in [404, 405, 421, 425, 401, 403, 408, 429, 500, 503] {
            assert!(!http(status).is_permanent(), "{status}");
        }
        for status in [404, 405, 421, 425, 401, 403, 429, 500, 503] {
            assert!(http(status).is_link_down(), "{status}");
        }
        for status in [400, 409, 410, 413, 415, 422] {
            assert!(http(status).is_permanent(), "{status}");
            assert!(!http(status).is_link_down(), "{status}");
        }
    }
}
