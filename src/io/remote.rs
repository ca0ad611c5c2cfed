//! Archives read over the network: `http://`, `https://` and `s3://` folders, through
//! `object_store` (ranged GETs, S3 signing, retries with backoff).
//!
//! One module, long because every part of it shares the one rule that a server is
//! untrusted: the store and its runtime (rebuilt after a fork), what errors may show of a
//! URL (never a credential), uploads, and the reads with their read-ahead.
//!
//! A remote archive is a folder like any other: `manifest.json` is read with one GET, and
//! each shard through [`RemoteFile`], a [`ReadAt`] whose reads are ranged GETs of exactly
//! the bytes a reader asks for, so that every check a reader makes on a local file applies
//! to them unchanged. A server is untrusted: every response must be the length asked
//! (bodies are collected no further than that), and what it holds is then checked by the
//! CRCs as a local file's bytes are.
//!
//! Requests run on a runtime of their own, built on first remote use and built again in a
//! process forked from one that used it (a forked child has none of its parent's threads,
//! and must not share its connections); see `format/checksum.rs` for the same rule.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};

use crate::io::range_cache::CachedShard;
use crate::io::{AccessPattern, ReadAt};
use crate::{ErrorKind, Result};

/// True when `location` names a remote archive (`http://`, `https://` or `s3://`) rather
/// than a local folder.
pub fn is_remote(location: &str) -> bool {
    scheme_of(location).is_some()
}

fn scheme_of(location: &str) -> Option<Scheme> {
    let lower = location.get(..8).unwrap_or(location).to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        Some(Scheme::Http)
    } else if lower.starts_with("s3://") {
        Some(Scheme::S3)
    } else {
        None
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Http,
    S3,
}

/// How long one request may take before it is retried (object_store's default is 30 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Ranges a [`RemoteFile`] keeps, least recently used first, and the bytes they may hold
/// together. A batch of small samples is hundreds of ranges, and must fit beside the index.
const CACHED_RANGES: usize = 1024;
const CACHED_BYTES: u64 = 64 << 20;

/// Ranges of one hint closer than this are fetched by one GET. object_store's default,
/// 1 MiB, would fetch most of a shard for a batch of small samples spread over it; 64 KiB
/// keeps the bytes fetched near the bytes asked for, and the GETs still run 10 at once.
const HINT_COALESCE_GAP: u64 = 64 << 10;

/// A remote archive folder: its object store, the prefix of its objects, and the URL shown
/// in messages (without credentials).
pub(crate) struct Remote {
    scheme: Scheme,
    /// The URL as given, for building the store again after a fork.
    given: String,
    /// The URL shown in messages: no user information, no query.
    shown: String,
    prefix: ObjectPath,
    store: Mutex<(u32, Arc<dyn ObjectStore>)>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("url", &self.shown).finish()
    }
}

impl Remote {
    /// The remote folder at `url`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a URL that cannot be parsed, or a store that cannot be
    /// configured (an S3 region or credentials missing, say).
    pub(crate) fn open(url: &str) -> Result<Remote> {
        let scheme = scheme_of(url).ok_or_else(|| {
            crate::Error::invalid_input(url, "not an http://, https:// or s3:// URL")
        })?;
        let shown = shown_url(url);
        let (store, prefix) = build_store(scheme, url, &shown)?;
        Ok(Remote {
            scheme,
            given: url.to_string(),
            shown,
            prefix,
            store: Mutex::new((std::process::id(), store)),
        })
    }

    /// The folder's URL as shown in messages.
    pub(crate) fn url(&self) -> &str {
        &self.shown
    }

    /// The URL of `name` in the folder, as shown in messages.
    pub(crate) fn url_of(&self, name: &str) -> String {
        format!("{}/{name}", self.shown.trim_end_matches('/'))
    }

    /// The folder's URL as a path, so that every message naming a file in it names its URL.
    pub(crate) fn as_path(&self) -> PathBuf {
        PathBuf::from(self.shown.trim_end_matches('/'))
    }

    fn object(&self, name: &str) -> ObjectPath {
        self.prefix.clone().join(name)
    }

    /// The store, built again in a process forked from the one that built it.
    fn store(&self) -> Result<Arc<dyn ObjectStore>> {
        let pid = std::process::id();
        let mut slot = self
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.0 != pid {
            let (store, _) = build_store(self.scheme, &self.given, &self.shown)?;
            // The parent's clients hold its connections and tasks of its runtime: never
            // dropped here, where dropping them would touch what the child does not own.
            let stale = std::mem::replace(&mut *slot, (pid, store));
            std::mem::forget(stale);
        }
        Ok(slot.1.clone())
    }

    /// The length of `name`, from a HEAD request.
    ///
    /// # Errors
    /// [`ErrorKind::Remote`], 404 included.
    pub(crate) fn len_of(&self, name: &str) -> Result<u64> {
        Ok(self.head(name, "the object's length")?.size)
    }

    /// The ETag of `name` (from a HEAD request), which names this version of the object:
    /// `None` when the server sends none.
    ///
    /// # Errors
    /// [`ErrorKind::Remote`], 404 included.
    pub(crate) fn etag_of(&self, name: &str) -> Result<Option<String>> {
        Ok(self.head(name, "the object's ETag")?.e_tag)
    }

    fn head(&self, name: &str, expected: &'static str) -> Result<object_store::ObjectMeta> {
        let (store, object, url) = (self.store()?, self.object(name), self.url_of(name));
        run(async move { store.head(&object).await })
            .and_then(|r| r.map_err(|e| failure(&url, None, expected, &e)))
    }

    /// The whole object `name`, of at most `max` bytes (its length is asked first, so that
    /// nothing larger is ever requested).
    ///
    /// # Errors
    /// [`ErrorKind::LimitExceeded`] past `max`, [`ErrorKind::Remote`] otherwise.
    pub(crate) fn read_capped(&self, name: &str, max: u64, limit: &'static str) -> Result<Vec<u8>> {
        let len = self.len_of(name)?;
        if len > max {
            return Err(ErrorKind::LimitExceeded {
                location: crate::Location::file(&self.as_path().join(name), 0),
                limit,
                max,
                got: len,
            }
            .into());
        }
        Ok(self.range(name, 0..len)?.to_vec())
    }

    /// Bytes `range` of `name`: exactly that many, or an error naming the URL and offset.
    ///
    /// # Errors
    /// [`ErrorKind::Remote`].
    pub(crate) fn range(&self, name: &str, range: Range<u64>) -> Result<Bytes> {
        let (store, object, url) = (self.store()?, self.object(name), self.url_of(name));
        run(async move { fetch_range(&*store, &object, &url, range, None).await })?
    }

    /// Bytes of each of `ranges` of `name`, fetched with ranges less than `gap` apart
    /// merged and several requests in flight (object_store's coalescing, 10 at once).
    ///
    /// # Errors
    /// [`ErrorKind::Remote`] for the first range that fails.
    pub(crate) fn ranges(
        &self,
        name: &str,
        ranges: Vec<Range<u64>>,
        gap: u64,
    ) -> Result<Vec<Bytes>> {
        let (store, object, url) = (self.store()?, self.object(name), self.url_of(name));
        run(async move {
            object_store::coalesce_ranges(
                &ranges,
                |r| fetch_range(&*store, &object, &url, r, None),
                gap,
            )
            .await
        })?
    }

    /// Starts fetching bytes `range` of `name` and returns at once; the bytes (or the
    /// error) arrive on the receiver.
    fn range_in_background(
        &self,
        name: &str,
        range: Range<u64>,
    ) -> Result<std::sync::mpsc::Receiver<Result<Bytes>>> {
        let (store, object, url) = (self.store()?, self.object(name), self.url_of(name));
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        runtime()?.spawn(async move {
            // The reader may have moved elsewhere and dropped the receiver: nothing to do.
            let _ = tx.send(fetch_range(&*store, &object, &url, range, None).await);
        });
        Ok(rx)
    }

    /// Runs `make(store, object, url)` for `name` on the remote runtime.
    ///
    /// # Errors
    /// What the future returns, or the runtime that cannot start.
    pub(crate) fn with_store<T, F, Fut>(&self, name: &str, make: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<dyn ObjectStore>, ObjectPath, String) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        let fut = make(self.store()?, self.object(name), self.url_of(name));
        run(fut)?
    }

    /// Copies bytes `bytes` of `name` to `out` in ascending GETs of `chunk` bytes, two
    /// in flight, calling `progress(bytes)` after each write. Each GET is checked for its
    /// length only: the caller checks the digest of what it wrote. With `if_match`, every
    /// GET asks for that version of the object (`If-Match`), so that the bytes copied
    /// never come from two versions.
    ///
    /// # Errors
    /// [`ErrorKind::Remote`] (status 412 when the object is no longer `if_match`), or
    /// `out`'s error named after `written_to`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn copy_to(
        &self,
        name: &str,
        bytes: Range<u64>,
        chunk: u64,
        if_match: Option<&str>,
        out: &mut dyn io::Write,
        written_to: &std::path::Path,
        progress: &mut dyn FnMut(u64),
    ) -> Result<()> {
        use futures::SinkExt;
        let (from, len) = (bytes.start, bytes.end);
        let chunk = chunk.clamp(64 << 10, CACHED_BYTES);
        let ranges: Vec<Range<u64>> = (from..len)
            .step_by(usize::try_from(chunk).unwrap_or(usize::MAX))
            .map(|start| start..start.saturating_add(chunk).min(len))
            .collect();
        let (store, object, url) = (self.store()?, self.object(name), self.url_of(name));
        let if_match = if_match.map(str::to_string);
        let (mut tx, mut rx) = futures::channel::mpsc::channel::<Result<Bytes>>(2);
        runtime()?.spawn(async move {
            let mut fetches = futures::stream::iter(ranges)
                .map(|r| {
                    let (store, object, url) = (store.clone(), object.clone(), url.clone());
                    let if_match = if_match.clone();
                    async move { fetch_range(&*store, &object, &url, r, if_match).await }
                })
                .buffered(2);
            while let Some(got) = fetches.next().await {
                let failed = got.is_err();
                if tx.send(got).await.is_err() || failed {
                    break;
                }
            }
        });
        let mut at = from;
        while let Some(got) = futures::executor::block_on(rx.next()) {
            let bytes = got?;
            out.write_all(&bytes)
                .map_err(|e| crate::Error::io_at(written_to, "write", at, e))?;
            at += bytes.len() as u64;
            progress(bytes.len() as u64);
        }
        if at != len {
            return Err(short_or_long(&self.url_of(name), at, len - at, 0, "fewer"));
        }
        Ok(())
    }

    /// Deletes every object under the folder (all of them, subfolders too); returns how
    /// many. A folder that is a whole bucket or server is refused: this removes what one
    /// write staged, never a store.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a folder with no prefix, [`ErrorKind::Remote`] for a
    /// listing or a deletion that fails (a plain HTTP server that takes no listing, say).
    pub(crate) fn remove_all(&self) -> Result<u64> {
        let whole = match self.scheme {
            Scheme::S3 => self.prefix.as_ref().is_empty(),
            // An HTTP store's base is the URL itself: its path says which folder it is.
            Scheme::Http => {
                let rest = self.shown.split_once("://").map_or("", |(_, r)| r);
                rest.find('/')
                    .and_then(|at| rest.get(at..))
                    .is_none_or(|path| path.trim_matches('/').is_empty())
            }
        };
        if whole {
            return Err(crate::Error::invalid_input(
                &self.shown,
                "a whole bucket or server is never removed; name a folder in it",
            ));
        }
        let (store, prefix, url) = (self.store()?, self.prefix.clone(), self.shown.clone());
        run(async move {
            let mut listing = store.list(Some(&prefix));
            let mut objects = Vec::new();
            while let Some(meta) = listing.next().await {
                let meta = meta.map_err(|e| failure(&url, None, "the folder's listing", &e))?;
                objects.push(meta.location);
            }
            for object in &objects {
                match store.delete(object).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(failure(&url, None, "to delete an object", &e)),
                }
            }
            Ok(objects.len() as u64)
        })?
    }

    /// True when the store takes multipart uploads (S3; plain HTTP takes whole PUTs only).
    pub(crate) fn multipart(&self) -> bool {
        self.scheme == Scheme::S3
    }

    /// Uploads `bytes` as `name` in one PUT.
    ///
    /// # Errors
    /// [`ErrorKind::Remote`].
    pub(crate) fn put(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        let what = format!("to store {} bytes", bytes.len());
        self.with_store(name, |store, object, url| async move {
            store
                .put(&object, bytes.into())
                .await
                .map(|_| ())
                .map_err(|e| failure(&url, None, &what, &e))
        })
    }

    /// Starts a multipart upload of `name`.
    ///
    /// # Errors
    /// [`ErrorKind::Remote`].
    pub(crate) fn start_multipart(&self, name: &str) -> Result<Upload> {
        let url = self.url_of(name);
        let upload = self.with_store(name, |store, object, url| async move {
            store
                .put_multipart(&object)
                .await
                .map_err(|e| failure(&url, None, "a multipart upload", &e))
        })?;
        Ok(Upload {
            upload: Some(upload),
            url,
            sent: 0,
        })
    }

    /// A shard file `name` of `len` bytes (the manifest's size: no request is made to learn
    /// it), read ahead `chunk` bytes at a time once advised sequential, and through `disk`
    /// when there is an on-disk cache.
    pub(crate) fn file(
        self: &Arc<Self>,
        name: &str,
        len: u64,
        chunk: u64,
        disk: Option<CachedShard>,
    ) -> RemoteFile {
        RemoteFile {
            remote: self.clone(),
            name: name.to_string(),
            len,
            disk,
            chunk: chunk.clamp(1, CACHED_BYTES),
            sequential: AtomicBool::new(false),
            cache: Mutex::new(VecDeque::new()),
            ahead: Mutex::new(ReadAhead::default()),
        }
    }
}

/// The object store for `url` and the prefix of the folder's objects in it.
fn build_store(
    scheme: Scheme,
    url: &str,
    shown: &str,
) -> Result<(Arc<dyn ObjectStore>, ObjectPath)> {
    let bad =
        |e: object_store::Error| crate::Error::invalid_input(shown, scrub(&e.to_string(), url));
    let retry = object_store::RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            base: 2.0,
        },
        max_retries: 10,
        retry_timeout: Duration::from_secs(3 * 60),
    };
    let options = object_store::ClientOptions::new()
        .with_timeout(REQUEST_TIMEOUT)
        .with_connect_timeout(Duration::from_secs(10));
    match scheme {
        Scheme::Http => {
            // An http:// URL asks for plain HTTP by itself.
            let store = object_store::http::HttpBuilder::new()
                .with_url(url.trim_end_matches('/'))
                .with_retry(retry)
                .with_client_options(options.with_allow_http(true))
                .build()
                .map_err(bad)?;
            Ok((Arc::new(store), ObjectPath::default()))
        }
        Scheme::S3 => {
            let rest = url.get(5..).unwrap_or_default();
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(crate::Error::invalid_input(
                    shown,
                    "no bucket in the s3:// URL",
                ));
            }
            let mut builder = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry)
                .with_client_options(options);
            // Plain HTTP is allowed only to an endpoint on this machine (a local test
            // server); anything else needs TLS unless AWS_ALLOW_HTTP says otherwise.
            let endpoint = std::env::var("AWS_ENDPOINT_URL")
                .or_else(|_| std::env::var("AWS_ENDPOINT"))
                .unwrap_or_default();
            let allowed = std::env::var("AWS_ALLOW_HTTP").is_ok_and(|v| v == "true");
            builder = builder.with_allow_http(allowed || is_loopback_http(&endpoint));
            if std::env::var_os("AWS_REGION").is_none()
                && std::env::var_os("AWS_DEFAULT_REGION").is_none()
            {
                builder = builder.with_region("us-east-1");
            } else if let Ok(region) = std::env::var("AWS_REGION") {
                builder = builder.with_region(region);
            }
            let store = builder.build().map_err(bad)?;
            let prefix = ObjectPath::parse(prefix.trim_matches('/')).map_err(|e| {
                crate::Error::invalid_input(shown, format!("bad object prefix: {e}"))
            })?;
            Ok((Arc::new(store), prefix))
        }
    }
}

fn is_loopback_http(endpoint: &str) -> bool {
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', ':']).next().unwrap_or_default();
    host == "localhost" || host.starts_with("127.") || rest.starts_with("[::1]")
}

/// `location` as messages show it: a URL without its user information (`user:password@`)
/// or query (which may hold a signature); anything else unchanged.
pub fn without_credentials(location: &str) -> String {
    if is_remote(location) {
        shown_url(location)
    } else {
        location.to_string()
    }
}

fn shown_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority.rsplit('@').next().unwrap_or_default();
    format!("{scheme}://{host}{path}")
}

/// `text` with any credentials the given URL carried (user information, query) removed.
fn scrub(text: &str, given: &str) -> String {
    let mut text = text.to_string();
    let rest = given.split_once("://").map_or(given, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    if let Some((userinfo, _)) = authority.rsplit_once('@') {
        if !userinfo.is_empty() {
            text = text.replace(userinfo, "REDACTED");
        }
    }
    if let Some((_, query)) = given.split_once('?') {
        if !query.is_empty() {
            text = text.replace(query, "REDACTED");
        }
    }
    // Server error bodies can be long: the start says what went wrong.
    if text.len() > 400 {
        let mut cut = 400;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// GETs bytes `range` of `object`, collecting no more than the range's length: a body longer
/// or shorter than asked is an error, never other bytes. object_store retries a cut body by
/// asking for the rest (and refuses a changed ETag or a wrong `Content-Range`). With
/// `if_match`, only that version of the object is accepted (the server answers 412 for
/// another).
async fn fetch_range(
    store: &dyn ObjectStore,
    object: &ObjectPath,
    url: &str,
    range: Range<u64>,
    if_match: Option<String>,
) -> Result<Bytes> {
    let want = range.end.saturating_sub(range.start);
    if want == 0 {
        return Ok(Bytes::new());
    }
    let what = || format!("{want} bytes");
    let options = GetOptions {
        range: Some(GetRange::Bounded(range.clone())),
        if_match,
        ..GetOptions::default()
    };
    let result = store
        .get_opts(object, options)
        .await
        .map_err(|e| failure(url, Some(range.start), &what(), &e))?;
    let mut stream = result.into_stream();
    let cap = usize::try_from(want).unwrap_or(usize::MAX);
    let mut first: Option<Bytes> = None;
    let mut buf: Vec<u8> = Vec::new();
    let mut got: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| failure(url, Some(range.start + got), &what(), &e))?;
        got = got.saturating_add(chunk.len() as u64);
        if got > want {
            return Err(short_or_long(url, range.start, want, got, "more"));
        }
        match first.take() {
            None if buf.is_empty() => first = Some(chunk),
            Some(f) => {
                // The capacity is the length asked, never what the server claims.
                buf.reserve_exact(cap);
                buf.extend_from_slice(&f);
                buf.extend_from_slice(&chunk);
            }
            None => buf.extend_from_slice(&chunk),
        }
    }
    if got < want {
        return Err(short_or_long(url, range.start, want, got, "fewer"));
    }
    Ok(match first {
        Some(f) => f,
        None => Bytes::from(buf),
    })
}

fn short_or_long(url: &str, offset: u64, want: u64, got: u64, which: &str) -> crate::Error {
    ErrorKind::Remote {
        url: url.to_string(),
        offset: Some(offset),
        status: None,
        expected: format!("{want} bytes"),
        reason: format!("the server sent {which} bytes ({got} at least)"),
    }
    .into()
}

/// A typed remote error for an object_store failure: its HTTP status when one is known,
/// and its message with any credentials removed.
pub(crate) fn failure(
    url: &str,
    offset: Option<u64>,
    expected: &str,
    e: &object_store::Error,
) -> crate::Error {
    let text = e.to_string();
    let status = match e {
        object_store::Error::NotFound { .. } => Some(404),
        object_store::Error::PermissionDenied { .. } => Some(403),
        object_store::Error::Unauthenticated { .. } => Some(401),
        object_store::Error::Precondition { .. } => Some(412),
        object_store::Error::NotModified { .. } => Some(304),
        _ => status_in(&text),
    };
    ErrorKind::Remote {
        url: url.to_string(),
        offset,
        status,
        expected: expected.to_string(),
        reason: scrub(&text, url),
    }
    .into()
}

/// The status code in object_store's "status code: 503" wording, if any.
fn status_in(text: &str) -> Option<u16> {
    let at = text.find("status code: ")? + "status code: ".len();
    text.get(at..at + 3)?.parse().ok()
}

/// A runtime error: the runtime could not be built.
fn no_runtime(e: &io::Error) -> crate::Error {
    ErrorKind::Remote {
        url: String::new(),
        offset: None,
        status: None,
        expected: "a runtime for network requests".into(),
        reason: e.to_string(),
    }
    .into()
}

/// The runtime requests run on: built on first use, and again in a process forked from one
/// that built it (whose threads the child does not have).
fn runtime() -> Result<Arc<tokio::runtime::Runtime>> {
    static RUNTIME: Mutex<Option<(u32, Arc<tokio::runtime::Runtime>)>> = Mutex::new(None);
    let pid = std::process::id();
    let mut slot = RUNTIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((owner, rt)) = slot.as_ref() {
        if *owner == pid {
            return Ok(rt.clone());
        }
    }
    // The parent's runtime has no threads here; dropping it would wait for them.
    if let Some(stale) = slot.take() {
        std::mem::forget(stale);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("shardpack-net")
        .enable_all()
        .build()
        .map_err(|e| no_runtime(&e))?;
    let rt = Arc::new(rt);
    *slot = Some((pid, rt.clone()));
    Ok(rt)
}

/// Runs `fut` on the remote runtime and waits for it on this thread. It is spawned rather
/// than blocked on, so that a caller already inside an async runtime (a Python event loop's
/// thread, a tokio task) gets its answer instead of a panic.
pub(crate) fn run<T, F>(fut: F) -> Result<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let rt = runtime()?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().map_err(|_| {
        no_runtime(&io::Error::other(
            "the request was dropped before it finished",
        ))
    })
}

/// A multipart upload under way: parts in order, then [`Upload::complete`].
pub(crate) struct Upload {
    upload: Option<Box<dyn object_store::MultipartUpload>>,
    url: String,
    sent: u64,
}

impl Upload {
    /// Uploads the next part.
    pub(crate) fn part(&mut self, bytes: Vec<u8>) -> Result<()> {
        let Some(mut upload) = self.upload.take() else {
            return Err(self.gone());
        };
        let (url, at, n) = (self.url.clone(), self.sent, bytes.len() as u64);
        let (upload, sent) = run(async move {
            let sent = upload.put_part(bytes.into()).await;
            (upload, sent)
        })?;
        self.upload = Some(upload);
        sent.map_err(|e| failure(&url, Some(at), &format!("to store {n} bytes"), &e))?;
        self.sent += n;
        Ok(())
    }

    /// Finishes the upload: the object appears whole, or not at all.
    pub(crate) fn complete(mut self) -> Result<()> {
        let Some(mut upload) = self.upload.take() else {
            return Err(self.gone());
        };
        let url = self.url.clone();
        run(async move { upload.complete().await })?
            .map(|_| ())
            .map_err(|e| failure(&url, None, "to complete the multipart upload", &e))
    }

    /// Abandons the upload (best effort: the store drops its parts).
    pub(crate) fn abort(mut self) {
        if let Some(mut upload) = self.upload.take() {
            let _ = run(async move { upload.abort().await });
        }
    }

    fn gone(&self) -> crate::Error {
        ErrorKind::Remote {
            url: self.url.clone(),
            offset: Some(self.sent),
            status: None,
            expected: "a multipart upload under way".into(),
            reason: "an earlier part failed".into(),
        }
        .into()
    }
}

/// Ranged GETs a sequential reader keeps in flight ahead of the bytes it reads.
const RANGES_IN_FLIGHT: usize = 2;

/// A remote shard file read with ranged GETs: a random read fetches exactly the bytes asked;
/// once advised sequential, a miss fetches `chunk` bytes (or the read, if larger), and the
/// next [`RANGES_IN_FLIGHT`] ranges of that size are asked for at once, in the background,
/// so that the network works while the reader checks and decodes. Ranges read ahead or
/// asked for by a hint (the index on a shard's first use, `get_many`'s batch) are kept, at
/// most [`CACHED_RANGES`] and [`CACHED_BYTES`] together, the least recently used given up
/// first, so that the reads inside them cost no request and the index, used by every read,
/// stays. Kept bytes are checked by every read that uses them, as a
/// map's are: bytes damaged in transit fail their CRC, never pass, and once a reader says
/// so ([`ReadAt::check_failed`]) they are given up and fetched again.
///
/// With an on-disk cache (`disk`), every fetch goes through it: whole cached blocks are
/// read from the folder, and only the runs of blocks it lacks are asked of the server.
pub(crate) struct RemoteFile {
    remote: Arc<Remote>,
    name: String,
    len: u64,
    disk: Option<CachedShard>,
    chunk: u64,
    sequential: AtomicBool,
    cache: Mutex<VecDeque<(u64, Bytes)>>,
    ahead: Mutex<ReadAhead>,
}

/// The ranges a sequential reader has in flight: contiguous, ascending, the next one to
/// ask for starting at `next`.
#[derive(Default)]
struct ReadAhead {
    in_flight: VecDeque<(Range<u64>, std::sync::mpsc::Receiver<Result<Bytes>>)>,
    next: u64,
}

impl RemoteFile {
    /// Bytes `range` of the file: through the on-disk cache when there is one, from the
    /// server otherwise.
    fn fetch(&self, range: Range<u64>) -> Result<Bytes> {
        match &self.disk {
            Some(disk) => disk.read(range, &|r| self.remote.range(&self.name, r)),
            None => self.remote.range(&self.name, range),
        }
    }

    /// [`RemoteFile::fetch`] started in the background; the bytes (or the error) arrive on
    /// the receiver. Reads of the cache folder run on the runtime's blocking threads.
    fn fetch_in_background(
        &self,
        range: Range<u64>,
    ) -> Result<std::sync::mpsc::Receiver<Result<Bytes>>> {
        let Some(disk) = self.disk.clone() else {
            return self.remote.range_in_background(&self.name, range);
        };
        let (remote, name) = (self.remote.clone(), self.name.clone());
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        runtime()?.spawn_blocking(move || {
            // The reader may have moved elsewhere and dropped the receiver: nothing to do.
            let _ = tx.send(disk.read(range, &|r| remote.range(&name, r)));
        });
        Ok(rx)
    }

    /// `range` grown to whole cached blocks when there is a cache, so that what is fetched
    /// ahead is cached whole; unchanged otherwise.
    fn widened(&self, range: Range<u64>) -> Range<u64> {
        match &self.disk {
            Some(disk) => disk.widened(range),
            None => range,
        }
    }

    /// Fills `buf` from kept ranges, across several when they are contiguous, and makes
    /// those the most recently used; false when some of its bytes are in none.
    fn cached(&self, offset: u64, buf: &mut [u8]) -> bool {
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut at = 0usize;
        let mut used: Vec<usize> = Vec::new();
        'fill: while at < buf.len() {
            let pos = offset + at as u64;
            for (index, (start, bytes)) in cache.iter().enumerate().rev() {
                let piece_end = start + bytes.len() as u64;
                if *start <= pos && pos < piece_end {
                    let from = (pos - start) as usize;
                    let n = (buf.len() - at).min(bytes.len() - from);
                    let (Some(dst), Some(src)) =
                        (buf.get_mut(at..at + n), bytes.get(from..from + n))
                    else {
                        return false;
                    };
                    dst.copy_from_slice(src);
                    at += n;
                    used.push(index);
                    continue 'fill;
                }
            }
            return false;
        }
        used.sort_unstable();
        used.dedup();
        let mut moved = Vec::with_capacity(used.len());
        for &index in used.iter().rev() {
            moved.extend(cache.remove(index));
        }
        cache.extend(moved.into_iter().rev());
        true
    }

    /// A sequential read of `offset..end` that the kept ranges do not hold: the ranges in
    /// flight that it reaches are waited for and kept; if they do not hold it all (the
    /// reader moved elsewhere, or a background GET failed), `offset..` is fetched now. Then
    /// the ranges after it are asked for, so that they arrive while the caller works.
    fn read_sequential(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset + buf.len() as u64;
        let step = self.chunk.max(buf.len() as u64);
        let mut ahead = self
            .ahead
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let reaches = ahead
            .in_flight
            .front()
            .is_some_and(|(r, _)| r.start <= offset && offset < ahead.next);
        if !reaches {
            ahead.in_flight.clear();
        }
        while let Some((range, _)) = ahead.in_flight.front() {
            if range.start >= end {
                break;
            }
            let Some((range, rx)) = ahead.in_flight.pop_front() else {
                break;
            };
            match rx.recv() {
                Ok(Ok(bytes)) => self.keep(range.start, bytes),
                // The read below asks again, and reports what still fails.
                _ => ahead.in_flight.clear(),
            }
        }
        if !self.cached(offset, buf) {
            ahead.in_flight.clear();
            let fetch_end = offset.saturating_add(step).max(end).min(self.len);
            let bytes = self.fetch(offset..fetch_end).map_err(io::Error::other)?;
            let src = bytes
                .get(..buf.len())
                .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
            buf.copy_from_slice(src);
            self.keep(offset, bytes);
            ahead.next = fetch_end;
        }
        if ahead.in_flight.is_empty() {
            ahead.next = ahead.next.max(end);
        }
        while ahead.in_flight.len() < RANGES_IN_FLIGHT && ahead.next < self.len {
            let range = self.widened(ahead.next..ahead.next.saturating_add(step).min(self.len));
            match self.fetch_in_background(range.clone()) {
                Ok(rx) => {
                    ahead.next = range.end;
                    ahead.in_flight.push_back((range, rx));
                }
                Err(_) => break,
            }
        }
        Ok(())
    }

    fn keep(&self, offset: u64, bytes: Bytes) {
        if bytes.len() as u64 > CACHED_BYTES {
            return;
        }
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.push_back((offset, bytes));
        let mut total: u64 = cache.iter().map(|(_, b)| b.len() as u64).sum();
        while cache.len() > CACHED_RANGES || total > CACHED_BYTES {
            match cache.pop_front() {
                Some((_, b)) => total -= b.len() as u64,
                None => break,
            }
        }
    }

    /// Of the ranges a hint wants, keeps those the cache folder holds whole, and returns the
    /// others grown to whole blocks, for the server.
    fn kept_from_disk(&self, disk: &CachedShard, wanted: Vec<Range<u64>>) -> Vec<Range<u64>> {
        let (held, missing): (Vec<_>, Vec<_>) =
            wanted.into_iter().partition(|r| disk.holds(r.clone()));
        for range in held {
            // Read as any fetch is: a block removed meanwhile is asked of the server.
            if let Ok(bytes) = self.fetch(range.clone()) {
                self.keep(range.start, bytes);
            }
        }
        let mut missing: Vec<Range<u64>> = missing.into_iter().map(|r| disk.widened(r)).collect();
        missing.sort_by_key(|r| (r.start, r.end));
        missing.dedup();
        missing
    }

    fn is_cached(&self, offset: u64, len: u64) -> bool {
        let cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache
            .iter()
            .any(|(s, b)| *s <= offset && offset + len <= s + b.len() as u64)
    }
}

impl ReadAt for RemoteFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.len)
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        if buf.is_empty() || self.cached(offset, buf) {
            return Ok(());
        }
        // A random read fetches exactly what is asked and keeps nothing: read again (after
        // a CRC error, say), it is fetched again. A sequential one reads ahead and keeps
        // the rest for the reads that follow.
        if self.sequential.load(Ordering::Relaxed) {
            return self.read_sequential(offset, buf);
        }
        let bytes = self.fetch(offset..end).map_err(io::Error::other)?;
        let src = bytes
            .get(..buf.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn will_need(&self, offset: u64, len: u64) {
        self.will_need_ranges(&[(offset, len)]);
    }

    fn will_need_ranges(&self, ranges: &[(u64, u64)]) {
        // At most half the cache, so that what the hint fetches does not push out the
        // index or itself before it is read; the rest of a larger hint is read as asked.
        let (mut ranges_left, mut bytes_left) = (CACHED_RANGES / 2, CACHED_BYTES / 2);
        let wanted: Vec<Range<u64>> = ranges
            .iter()
            .filter(|&&(o, l)| l > 0 && o.saturating_add(l) <= self.len)
            .filter(|&&(o, l)| !self.is_cached(o, l))
            .take_while(|&&(_, l)| {
                let fits = ranges_left > 0 && l <= bytes_left;
                ranges_left = ranges_left.saturating_sub(1);
                bytes_left = bytes_left.saturating_sub(l);
                fits
            })
            .map(|&(o, l)| o..o + l)
            .collect();
        if wanted.is_empty() {
            return;
        }
        let wanted = match &self.disk {
            Some(disk) => self.kept_from_disk(disk, wanted),
            None => wanted,
        };
        // A hint: a failure here is met again, and reported, by the read that needs the bytes.
        if let Ok(fetched) = self
            .remote
            .ranges(&self.name, wanted.clone(), HINT_COALESCE_GAP)
        {
            for (r, bytes) in wanted.into_iter().zip(fetched) {
                if let Some(disk) = &self.disk {
                    disk.store(r.start, &bytes);
                }
                self.keep(r.start, bytes);
            }
        }
    }

    fn check_failed(&self, offset: u64, len: u64) {
        let failed = offset..offset.saturating_add(len.max(1));
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|(start, bytes)| {
                start + bytes.len() as u64 <= failed.start || failed.end <= *start
            });
        if let Some(disk) = &self.disk {
            disk.forget(failed);
        }
    }

    fn advise(&self, pattern: AccessPattern) {
        let sequential = pattern == AccessPattern::Sequential;
        self.sequential.store(sequential, Ordering::Relaxed);
        if !sequential {
            self.ahead
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .in_flight
                .clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_credentials() {
        assert_eq!(
            shown_url("https://user:secret@example.com/a/b?sig=xyz"),
            "https://example.com/a/b"
        );
        assert_eq!(shown_url("s3://bucket/prefix"), "s3://bucket/prefix");
        let text = scrub(
            "error for https://user:secret@example.com/a?sig=xyz",
            "https://user:secret@example.com/a?sig=xyz",
        );
        assert!(!text.contains("secret") && !text.contains("xyz"), "{text}");
    }

    #[test]
    fn schemes_are_recognised() {
        assert!(is_remote("https://h/x") && is_remote("HTTP://h/x") && is_remote("s3://b/p"));
        assert!(!is_remote("/data/x") && !is_remote("file:///x") && !is_remote("s3"));
    }

    #[test]
    fn status_codes_are_read_from_messages() {
        assert_eq!(
            status_in("Server returned non-2xx status code: 503 Service Unavailable: "),
            Some(503)
        );
        assert_eq!(status_in("connection reset"), None);
    }

    #[test]
    fn loopback_endpoints_may_be_plain_http() {
        assert!(is_loopback_http("http://127.0.0.1:9000"));
        assert!(is_loopback_http("http://localhost:9000/"));
        assert!(!is_loopback_http("http://example.com"));
        assert!(!is_loopback_http("https://127.0.0.1"));
    }
}
