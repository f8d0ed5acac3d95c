//! The attachment fetcher every endpoint's `ChannelContext` carries: an
//! outbound attachment's URL turned into its bytes, for a channel that
//! must send them (e-mail always). A send names any URL it likes, so the
//! fetcher connects only to public addresses (`address.rs`; unless
//! `attachments.allow_private_hosts`), checked on every redirect, for a
//! literal IP before the request and for a name by the resolver the HTTP
//! client connects through (`resolver.rs`); it caps the size while it
//! reads and the whole fetch's time, follows no proxy, and shows a URL
//! without its user info or query (`naming.rs`).

mod address;
mod naming;
mod resolver;
mod url_check;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use phonerelay_channel::{Attachment, AttachmentFetcher, FetchError, MediaUpload};
use reqwest::{StatusCode, Url, header};

pub use address::check as check_address;
pub use naming::shown_url;
pub use resolver::{AddressCheck, ForbiddenHost};
pub use url_check::refusal as url_refusal;

use crate::config::AttachmentsConfig;
use resolver::CheckedResolver;

/// Redirects followed per fetch; one more is refused.
pub const MAX_REDIRECTS: usize = 3;

/// Fetches attachments over HTTP(S) with reqwest (rustls).
pub struct HttpFetcher {
    http: reqwest::Client,
    check: AddressCheck,
    max_bytes: u64,
    timeout: Duration,
}

impl HttpFetcher {
    /// The fetcher `[attachments]` describes.
    pub fn new(config: &AttachmentsConfig) -> Result<Self, String> {
        let allow_private_hosts = config.allow_private_hosts;
        let check: AddressCheck =
            Arc::new(move |ip| address::check(ip, allow_private_hosts).map_err(str::to_string));
        Self::with_check(
            config.max_bytes,
            Duration::from_secs(config.timeout_seconds),
            check,
        )
    }

    /// A fetcher that connects only to the addresses `check` allows (tests
    /// use this to tell one loopback address from another).
    pub fn with_check(
        max_bytes: u64,
        timeout: Duration,
        check: AddressCheck,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(CheckedResolver::new(check.clone())))
            // A proxy would connect for us, to whatever the URL names.
            .no_proxy()
            // Followed here, each target checked (`fetch_from`).
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .connect_timeout(timeout)
            .user_agent(concat!("phonerelay/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the attachment fetcher's HTTP client: {e}"))?;
        Ok(Self {
            http,
            check,
            max_bytes,
            timeout,
        })
    }

    /// Refused unless the URL alone says it may be fetched
    /// (`url_check.rs`), a literal IP host judged by `check` (the resolver
    /// never sees literal IPs).
    fn check_target(&self, url: &Url) -> Result<(), FetchError> {
        match url_check::refusal(url, &*self.check) {
            None => Ok(()),
            Some(why) => Err(FetchError::refused(format!("{}: {why}", shown_url(url)))),
        }
    }

    /// GET `url`, following at most [`MAX_REDIRECTS`] redirects, each
    /// target checked as the first; the final 2xx answer's body.
    async fn fetch_from(
        &self,
        mut url: Url,
        attachment: &Attachment,
    ) -> Result<MediaUpload, FetchError> {
        let mut redirects = 0;
        loop {
            self.check_target(&url)?;
            let shown = shown_url(&url);
            let mut response = self
                .http
                .get(url.clone())
                .send()
                .await
                .map_err(|e| classify(&shown, e))?;
            let status = response.status();
            if status.is_redirection() {
                url = self.redirect_target(&url, &response, redirects)?;
                redirects += 1;
                continue;
            }
            if !status.is_success() {
                return Err(status_error(&shown, status));
            }
            // No `Range` is asked, so a 206 is a part of the file, and a
            // 204 or 205 none of it: sent, either would be a file cut short.
            if !matches!(
                status,
                StatusCode::OK | StatusCode::NON_AUTHORITATIVE_INFORMATION
            ) {
                return Err(FetchError::refused(format!(
                    "{shown} answered HTTP {status}, not the whole file"
                )));
            }
            if let Some(length) = response.content_length()
                && length > self.max_bytes
            {
                return Err(too_large(&shown, self.max_bytes));
            }
            let served_type = header_text(&response, header::CONTENT_TYPE);
            let disposition = header_text(&response, header::CONTENT_DISPOSITION);
            // Sized once when the server says how much (already checked
            // against the limit; grown by doubling it could need twice
            // it), but not past a first bound on its word alone: a server
            // may announce a large file and send nothing.
            const PRESIZED_AT_MOST: u64 = 1024 * 1024;
            let announced = response.content_length().unwrap_or(0);
            let mut bytes = Vec::with_capacity(announced.min(PRESIZED_AT_MOST) as usize);
            while let Some(chunk) = response.chunk().await.map_err(|e| classify(&shown, e))? {
                if (bytes.len() + chunk.len()) as u64 > self.max_bytes {
                    return Err(too_large(&shown, self.max_bytes));
                }
                bytes.extend_from_slice(&chunk);
            }
            return Ok(MediaUpload {
                content_type: naming::content_type(
                    served_type.as_deref(),
                    attachment.content_type.as_deref(),
                ),
                filename: naming::filename(
                    attachment.filename.as_deref(),
                    disposition.as_deref(),
                    &url,
                ),
                bytes,
            });
        }
    }

    /// Where a 3xx answer sends the fetch, if it may go on.
    fn redirect_target(
        &self,
        from: &Url,
        response: &reqwest::Response,
        redirects: usize,
    ) -> Result<Url, FetchError> {
        let shown = shown_url(from);
        let status = response.status();
        if !matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
            return Err(status_error(&shown, status));
        }
        if redirects >= MAX_REDIRECTS {
            return Err(FetchError::refused(format!(
                "{shown}: more than {MAX_REDIRECTS} redirects"
            )));
        }
        let location = header_text(response, header::LOCATION).ok_or_else(|| {
            FetchError::refused(format!("{shown} answered {status} without a Location"))
        })?;
        from.join(&location)
            .map_err(|_| FetchError::refused(format!("{shown} redirected to an invalid URL")))
    }
}

#[async_trait]
impl AttachmentFetcher for HttpFetcher {
    async fn fetch(&self, attachment: &Attachment) -> Result<MediaUpload, FetchError> {
        // Never echoed: the URL may carry a token.
        let url = Url::parse(&attachment.url)
            .map_err(|e| FetchError::refused(format!("the attachment's URL is invalid: {e}")))?;
        let shown = shown_url(&url);
        match tokio::time::timeout(self.timeout, self.fetch_from(url, attachment)).await {
            Ok(fetched) => fetched,
            Err(_) => Err(FetchError::transient(format!(
                "fetching {shown} took longer than {} s",
                self.timeout.as_secs_f64()
            ))),
        }
    }
}

fn header_text(response: &reqwest::Response, name: header::HeaderName) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

fn too_large(shown: &str, max_bytes: u64) -> FetchError {
    FetchError::refused(format!(
        "{shown} is larger than attachments.max_bytes ({max_bytes} bytes)"
    ))
}

/// A non-2xx final answer: 408, 429 and 5xx may pass, any other is a
/// refusal.
fn status_error(shown: &str, status: StatusCode) -> FetchError {
    let message = format!("{shown} answered HTTP {status}");
    if status.is_server_error() || matches!(status.as_u16(), 408 | 429) {
        FetchError::transient(message)
    } else {
        FetchError::refused(message)
    }
}

/// A request that got no answer: refused if the resolver refused the host,
/// else transient (timeout, DNS, connection, TLS). Named without the URL
/// reqwest's error carries.
fn classify(shown: &str, error: reqwest::Error) -> FetchError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = source {
        if let Some(forbidden) = e.downcast_ref::<ForbiddenHost>() {
            tracing::info!(host = %forbidden.host, address = %forbidden.address,
                "attachment fetch refused: {}", forbidden.reason);
            return FetchError::refused(format!("{shown}: {forbidden}"));
        }
        source = e.source();
    }
    // The client refused to build the request (a URL it cannot send):
    // no try will do better.
    if error.is_builder() {
        return FetchError::refused(format!("{shown} cannot be requested"));
    }
    if error.is_timeout() {
        return FetchError::transient(format!("{shown} did not answer in time"));
    }
    let error = error.without_url();
    let mut chain = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = source {
        let text = e.to_string();
        if !text.is_empty() && !chain.contains(&text) {
            chain.push(text);
        }
        source = e.source();
    }
    FetchError::transient(format!("cannot fetch {shown}: {}", chain.join(": ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetcher(allow_private_hosts: bool) -> HttpFetcher {
        HttpFetcher::new(&AttachmentsConfig {
            allow_private_hosts,
            ..AttachmentsConfig::default()
        })
        .unwrap()
    }

    fn target(fetcher: &HttpFetcher, url: &str) -> Result<(), FetchError> {
        fetcher.check_target(&Url::parse(url).unwrap())
    }

    /// The check each redirect target goes through too (`fetch_from`).
    #[test]
    fn a_literal_ip_target_is_checked_before_any_request() {
        let public_only = fetcher(false);
        for url in [
            "http://127.0.0.1:8080/x?token=S3CRET",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/x",
            "http://[::ffff:10.0.0.1]/x",
            "http://0x7f.1/x",
            "http://2130706433/x",
            "https://192.168.1.1/x",
        ] {
            let e = target(&public_only, url).unwrap_err();
            assert_eq!(
                e.class,
                phonerelay_channel::FetchErrorClass::Refused,
                "{url}"
            );
            assert!(e.message.contains("only public addresses"), "{url}: {e}");
            assert!(!e.message.contains("S3CRET"), "{e}");
        }
        for url in [
            "https://8.8.8.8/x",
            "https://files.example/x",
            "http://[2606:4700::1]/",
        ] {
            assert!(target(&public_only, url).is_ok(), "{url}");
        }
        let private_ok = fetcher(true);
        assert!(target(&private_ok, "http://127.0.0.1:8080/x").is_ok());
        assert!(target(&private_ok, "http://0.0.0.0:8080/x").is_err());
    }

    #[test]
    fn only_http_and_https_are_fetched() {
        let f = fetcher(true);
        for url in ["file:///etc/passwd", "ftp://files.example/x", "gopher://x/"] {
            let e = target(&f, url).unwrap_err();
            assert!(e.message.contains("only http(s)"), "{url}: {e}");
        }
    }

    #[test]
    fn answers_that_may_pass_are_transient_and_others_refused() {
        for status in [500, 502, 503, 504, 408, 429] {
            let e = status_error("https://x/y", StatusCode::from_u16(status).unwrap());
            assert!(e.is_transient(), "{status}");
        }
        for status in [400, 401, 403, 404, 410, 451, 304, 300] {
            let e = status_error("https://x/y", StatusCode::from_u16(status).unwrap());
            assert!(!e.is_transient(), "{status}");
        }
    }
}
