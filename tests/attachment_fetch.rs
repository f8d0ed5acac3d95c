//! The attachment fetcher (`src/fetch`) against a real HTTP server on
//! loopback: what it fetches, and every refusal that keeps a send from
//! making the bridge fetch what only it can reach.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use phonerelay::config::AttachmentsConfig;
use phonerelay::fetch::{AddressCheck, HttpFetcher};
use phonerelay_channel::{Attachment, AttachmentFetcher, FetchError, FetchErrorClass};

/// `attachments.max_bytes` in these tests.
const MAX: u64 = 1024;
const REPORT: &[u8] = b"%PDF-1.7 a small report \x00\x01\xff";

/// A file server on `ip`: knows how many requests reached it.
struct Server {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

struct Routes {
    hits: Arc<AtomicUsize>,
    /// Where `/away` redirects.
    away: String,
}

impl Server {
    async fn start(ip: &str, away: impl FnOnce(u16) -> String) -> Server {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let routes = Arc::new(Routes {
            hits: hits.clone(),
            away: away(addr.port()),
        });
        let app = axum::Router::new().fallback(serve).with_state(routes);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Server { addr, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn answer(status: StatusCode, headers: &[(header::HeaderName, &str)], body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    for (name, value) in headers {
        response
            .headers_mut()
            .insert(name.clone(), HeaderValue::from_str(value).unwrap());
    }
    response
}

/// A body without a Content-Length (chunked), `total` bytes or endless.
fn chunked(total: Option<usize>) -> Body {
    let chunk = Bytes::from(vec![b'x'; 256]);
    let chunks = stream::repeat(chunk).map(Ok::<_, std::io::Error>);
    match total {
        Some(total) => Body::from_stream(chunks.take(total.div_ceil(256))),
        None => Body::from_stream(chunks),
    }
}

async fn serve(State(routes): State<Arc<Routes>>, uri: Uri) -> Response {
    routes.hits.fetch_add(1, Ordering::SeqCst);
    let path = uri.path();
    let ok = StatusCode::OK;
    if let Some(n) = path.strip_prefix("/hop/") {
        let n: u32 = n.parse().unwrap();
        if n == 0 {
            return answer(
                ok,
                &[(header::CONTENT_TYPE, "text/plain")],
                "arrived".into(),
            );
        }
        let next = format!("/hop/{}", n - 1);
        return answer(
            StatusCode::FOUND,
            &[(header::LOCATION, &next)],
            Body::empty(),
        );
    }
    match path {
        "/files/report.pdf" => answer(
            ok,
            &[(header::CONTENT_TYPE, "application/pdf")],
            Body::from(REPORT),
        ),
        "/download" => answer(
            ok,
            &[
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"notes.txt\"",
                ),
            ],
            "some notes".into(),
        ),
        "/exact" => answer(ok, &[], Body::from(vec![b'x'; MAX as usize])),
        "/big" => answer(ok, &[], Body::from(vec![b'x'; MAX as usize + 1])),
        "/big-chunked" => answer(ok, &[], chunked(Some(MAX as usize + 1))),
        "/exact-chunked" => answer(ok, &[], chunked(Some(MAX as usize))),
        "/endless" => answer(ok, &[], chunked(None)),
        // Says it is too large, then sends nothing for a long time: only
        // an early look at the Content-Length refuses it at once.
        "/big-declared" => {
            let late = stream::once(async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; MAX as usize + 1]))
            });
            let length = (MAX + 1).to_string();
            answer(
                ok,
                &[(header::CONTENT_LENGTH, &length)],
                Body::from_stream(late),
            )
        }
        "/empty" => answer(StatusCode::NO_CONTENT, &[], Body::empty()),
        "/part" => answer(
            StatusCode::PARTIAL_CONTENT,
            &[(header::CONTENT_RANGE, "bytes 0-3/40")],
            Body::from(&REPORT[..4]),
        ),
        "/missing" => answer(StatusCode::NOT_FOUND, &[], "no such file".into()),
        "/busy" => answer(StatusCode::SERVICE_UNAVAILABLE, &[], "later".into()),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            answer(ok, &[], "too late".into())
        }
        "/away" => answer(
            StatusCode::TEMPORARY_REDIRECT,
            &[(header::LOCATION, &routes.away)],
            Body::empty(),
        ),
        _ => answer(StatusCode::NOT_FOUND, &[], Body::empty()),
    }
}

fn fetcher(allow_private_hosts: bool) -> HttpFetcher {
    HttpFetcher::new(&AttachmentsConfig {
        max_bytes: MAX,
        timeout_seconds: 10,
        allow_private_hosts,
    })
    .unwrap()
}

fn attachment(url: &str) -> Attachment {
    Attachment {
        url: url.into(),
        content_type: None,
        filename: None,
        size: None,
    }
}

async fn refused(fetcher: &HttpFetcher, url: &str) -> FetchError {
    let e = fetcher.fetch(&attachment(url)).await.unwrap_err();
    assert_eq!(e.class, FetchErrorClass::Refused, "{url}: {e}");
    e
}

#[tokio::test]
async fn a_file_is_fetched_with_its_bytes_type_and_name_when_private_hosts_are_allowed() {
    let server = Server::start("127.0.0.1", |_| String::new()).await;
    let fetcher = fetcher(true);

    let report = fetcher
        .fetch(&attachment(&server.url("/files/report.pdf?token=1")))
        .await
        .unwrap();
    assert_eq!(report.bytes, REPORT);
    assert_eq!(report.content_type.as_deref(), Some("application/pdf"));
    assert_eq!(report.filename.as_deref(), Some("report.pdf"));

    let notes = fetcher
        .fetch(&attachment(&server.url("/download")))
        .await
        .unwrap();
    assert_eq!(notes.bytes, b"some notes");
    assert_eq!(
        notes.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(notes.filename.as_deref(), Some("notes.txt"));

    // The send's own name wins; its type only where the server gave none.
    let named = fetcher
        .fetch(&Attachment {
            filename: Some("Q3 report.pdf".into()),
            content_type: Some("application/x-ignored".into()),
            ..attachment(&server.url("/files/report.pdf"))
        })
        .await
        .unwrap();
    assert_eq!(named.filename.as_deref(), Some("Q3 report.pdf"));
    assert_eq!(named.content_type.as_deref(), Some("application/pdf"));

    // Exactly the limit is allowed, with or without a Content-Length.
    for path in ["/exact", "/exact-chunked"] {
        let exact = fetcher.fetch(&attachment(&server.url(path))).await.unwrap();
        assert_eq!(exact.bytes.len() as u64, MAX, "{path}");
    }
}

#[tokio::test]
async fn loopback_is_refused_by_default_before_any_request_and_without_the_secret_parts() {
    let server = Server::start("127.0.0.1", |_| String::new()).await;
    let fetcher = fetcher(false);
    let port = server.addr.port();

    // A literal IP, checked before the request.
    // (A user name or password is refused before that: see below.)
    let literal = format!("http://127.0.0.1:{port}/files/report.pdf?token=S3CRET#frag");
    let e = refused(&fetcher, &literal).await;
    assert!(e.message.contains("loopback"), "{e}");
    assert!(
        e.message
            .contains(&format!("http://127.0.0.1:{port}/files/report.pdf")),
        "{e}"
    );
    for secret in ["S3CRET", "token", "frag"] {
        assert!(!e.message.contains(secret), "{secret} in {e}");
    }

    // A name, refused by the resolver: localhost is 127.0.0.1 and ::1.
    let name = format!("http://localhost:{port}/files/report.pdf?token=S3CRET");
    let e = refused(&fetcher, &name).await;
    assert!(e.message.contains("localhost resolves to"), "{e}");
    assert!(e.message.contains("loopback"), "{e}");
    assert!(!e.message.contains("S3CRET"), "{e}");
    // The kind of address, not the address: no lookup service for the
    // names of the bridge's network.
    assert!(
        !e.message.contains("127.0.0.1") && !e.message.contains("::1"),
        "{e}"
    );

    // Also the IPv4-mapped form of loopback.
    let mapped = format!("http://[::ffff:127.0.0.1]:{port}/files/report.pdf");
    let e = refused(&fetcher, &mapped).await;
    assert!(e.message.contains("loopback"), "{e}");

    assert_eq!(server.hits(), 0, "a refused fetch reached the server");
}

#[tokio::test]
async fn a_body_over_max_bytes_is_refused_with_or_without_a_content_length() {
    let server = Server::start("127.0.0.1", |_| String::new()).await;
    let fetcher = fetcher(true);
    let started = std::time::Instant::now();
    let e = refused(&fetcher, &server.url("/big-declared")).await;
    assert!(e.message.contains("larger than"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the body was waited for"
    );
    for path in ["/big", "/big-chunked", "/endless"] {
        let e = refused(&fetcher, &server.url(path)).await;
        assert!(
            e.message
                .contains("larger than attachments.max_bytes (1024 bytes)"),
            "{path}: {e}"
        );
    }
}

#[tokio::test]
async fn a_404_is_refused_and_a_503_may_pass() {
    let server = Server::start("127.0.0.1", |_| String::new()).await;
    let fetcher = fetcher(true);
    let e = refused(&fetcher, &server.url("/missing?token=S3CRET")).await;
    assert!(e.message.contains("404"), "{e}");
    assert!(!e.message.contains("S3CRET"), "{e}");
    let e = fetcher
        .fetch(&attachment(&server.url("/busy")))
        .await
        .unwrap_err();
    assert_eq!(e.class, FetchErrorClass::Transient, "{e}");
    assert!(e.message.contains("503"), "{e}");
}

/// Sent, either would be a file cut short: no `Range` was asked.
#[tokio::test]
async fn a_204_or_a_206_is_not_taken_for_the_whole_file() {
    let server = Server::start("127.0.0.1", |_| String::new()).await;
    let fetcher = fetcher(true);
    for (path, status) in [("/empty", "204"), ("/part", "206")] {
        let e = refused(&fetcher, &server.url(path)).await;
        assert!(e.message.contains(status), "{path}: {e}");
        assert!(e.message.contains("not the whole file"), "{path}: {e}");
    }
}

/// The client would send them as Basic credentials, over plain http too.
#[tokio::test]
async fn a_url_with_a_user_name_or_password_is_refused_before_any_request() {
    let server = Server::start("127.0.0.1", |_| String::new()).await;
    let fetcher = fetcher(true);
    let url = format!("http://ann:S3CRET@{}/files/report.pdf", server.addr);
    let e = refused(&fetcher, &url).await;
    assert!(e.message.contains("user name or password"), "{e}");
    assert!(!e.message.contains("S3CRET"), "{e}");
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn three_redirects_are_followed_and_a_fourth_is_refused() {
    let server = Server::start("127.0.0.1", |_| String::new()).await;
    let fetcher = fetcher(true);
    let three = fetcher
        .fetch(&attachment(&server.url("/hop/3")))
        .await
        .unwrap();
    assert_eq!(three.bytes, b"arrived");
    let hits = server.hits();
    let e = refused(&fetcher, &server.url("/hop/4")).await;
    assert!(e.message.contains("more than 3 redirects"), "{e}");
    assert_eq!(server.hits() - hits, 4, "the fifth request was made");
}

/// Only 127.0.0.2 stands for a public address here: a redirect from it
/// to 127.0.0.1, by literal IP or by name, is refused as a first URL
/// there would be, and 127.0.0.1 sees no request.
#[tokio::test]
async fn a_redirect_to_a_refused_address_is_refused() {
    let target = Server::start("127.0.0.1", |_| String::new()).await;
    let target_port = target.addr.port();
    let only_127_0_0_2: AddressCheck = Arc::new(|ip: IpAddr| {
        if ip == IpAddr::from([127, 0, 0, 2]) {
            Ok(())
        } else {
            Err("not 127.0.0.2".to_string())
        }
    });
    let fetcher = HttpFetcher::with_check(MAX, Duration::from_secs(10), only_127_0_0_2).unwrap();
    for away in [
        format!("http://127.0.0.1:{target_port}/files/report.pdf?token=S3CRET"),
        format!("http://localhost:{target_port}/files/report.pdf?token=S3CRET"),
    ] {
        let start = Server::start("127.0.0.2", |_| away.clone()).await;
        let direct = fetcher
            .fetch(&attachment(&start.url("/files/report.pdf")))
            .await
            .unwrap();
        assert_eq!(direct.bytes, REPORT);
        let e = refused(&fetcher, &start.url("/away")).await;
        assert!(e.message.contains("not 127.0.0.2"), "{away}: {e}");
        assert!(e.message.contains("/files/report.pdf"), "{e}");
        assert!(!e.message.contains("S3CRET"), "{e}");
        assert_eq!(start.hits(), 2);
    }
    assert_eq!(target.hits(), 0, "the redirect was followed");
}

#[tokio::test]
async fn a_slow_server_or_none_at_all_may_pass_and_other_schemes_never_do() {
    let server = Server::start("127.0.0.1", |_| String::new()).await;
    let quick = HttpFetcher::new(&AttachmentsConfig {
        max_bytes: MAX,
        timeout_seconds: 1,
        allow_private_hosts: true,
    })
    .unwrap();
    let started = std::time::Instant::now();
    let e = quick
        .fetch(&attachment(&server.url("/slow")))
        .await
        .unwrap_err();
    assert_eq!(e.class, FetchErrorClass::Transient, "{e}");
    assert!(e.message.contains("took longer than 1 s"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let e = quick
        .fetch(&attachment(&format!(
            "http://127.0.0.1:{port}/x?token=S3CRET"
        )))
        .await
        .unwrap_err();
    assert_eq!(e.class, FetchErrorClass::Transient, "{e}");
    assert!(!e.message.contains("S3CRET"), "{e}");

    for url in ["file:///etc/passwd", "ftp://127.0.0.1/x", "not a url"] {
        refused(&quick, url).await;
    }
}
