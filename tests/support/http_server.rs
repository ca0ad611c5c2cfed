//! A tiny HTTP/1.1 file server on loopback for the remote tests: GET (with `Range:
//! bytes=a-b`, and `If-Match` against the file's ETag of length and mtime), HEAD and PUT
//! over one folder, one request per connection, and faults to
//! inject: answer 503 a number of times, cut a body after N bytes, delay each answer, flip
//! a byte of what is sent. Nothing outside the test process is needed.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Faults, by file name (the last path segment); each is used up as it fires.
#[derive(Default)]
pub struct Faults {
    /// Answer 503 to the next N GETs of the file.
    pub unavailable: HashMap<String, u32>,
    /// Cut the next GET body of the file after N bytes (the connection is closed).
    pub cut_after: HashMap<String, u64>,
    /// Flip the byte at this file offset in the next N GET bodies that cover it.
    pub flip: HashMap<String, (u64, u32)>,
    /// Sleep this long before each answer.
    pub delay: Option<Duration>,
    /// Answer ranged GETs of the file with 200 and the whole file, N times.
    pub ignore_range: HashMap<String, u32>,
    /// Answer ranged GETs of the file with the range shifted by one byte (and saying so in
    /// `Content-Range`), N times.
    pub shift_range: HashMap<String, u32>,
    /// Claim this `Content-Length` (far more than is sent) in the next GET of the file.
    pub huge_length: HashMap<String, u64>,
    /// Answer 404 to every GET of the file for bytes from this offset on: a download cut
    /// off for good there, as a killed one is (404 is not retried). By offset, not by
    /// count: a client with two GETs in flight may have the later range arrive first.
    pub gone_from: HashMap<String, u64>,
}

pub struct Server {
    pub addr: String,
    pub root: PathBuf,
    pub faults: Arc<Mutex<Faults>>,
    /// GET requests served (ranged or not), HEADs apart.
    pub gets: Arc<AtomicU64>,
    pub heads: Arc<AtomicU64>,
    /// Body bytes sent.
    pub bytes_sent: Arc<AtomicU64>,
    /// The length of each GET answered, in the order answered.
    pub get_lengths: Arc<Mutex<Vec<u64>>>,
    /// Requests being answered now, and the most there ever were at once.
    pub active: Arc<AtomicU64>,
    pub most_active: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Server {
    /// The faults to inject, to set or clear between requests.
    pub fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.faults.lock().unwrap()
    }

    /// Serves `root` on 127.0.0.1 at a free port until dropped.
    pub fn start(root: &Path) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = Server {
            addr,
            root: root.to_path_buf(),
            faults: Arc::default(),
            gets: Arc::default(),
            heads: Arc::default(),
            bytes_sent: Arc::default(),
            get_lengths: Arc::default(),
            active: Arc::default(),
            most_active: Arc::default(),
            stop: Arc::default(),
        };
        let (root, faults, stop) = (
            server.root.clone(),
            server.faults.clone(),
            server.stop.clone(),
        );
        let (gets, heads, sent) = (
            server.gets.clone(),
            server.heads.clone(),
            server.bytes_sent.clone(),
        );
        let counts = Counts {
            lengths: server.get_lengths.clone(),
            active: server.active.clone(),
            most_active: server.most_active.clone(),
        };
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                // Head and body are two writes: without this the body of a small answer
                // waits for the client's delayed ACK of the head.
                let _ = conn.set_nodelay(true);
                let (root, faults) = (root.clone(), faults.clone());
                let (gets, heads, sent) = (gets.clone(), heads.clone(), sent.clone());
                let counts = counts.clone();
                std::thread::spawn(move || {
                    let now = counts.active.fetch_add(1, Ordering::SeqCst) + 1;
                    counts.most_active.fetch_max(now, Ordering::SeqCst);
                    let _ = serve(conn, &root, &faults, &gets, &heads, &sent, &counts);
                    counts.active.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        server
    }

    /// The URL of folder `rel` under the root.
    pub fn url(&self, rel: &str) -> String {
        format!("http://{}/{rel}", self.addr)
    }
}

#[derive(Clone)]
struct Counts {
    lengths: Arc<Mutex<Vec<u64>>>,
    active: Arc<AtomicU64>,
    most_active: Arc<AtomicU64>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(&self.addr);
    }
}

fn serve(
    conn: TcpStream,
    root: &Path,
    faults: &Mutex<Faults>,
    gets: &AtomicU64,
    heads: &AtomicU64,
    sent: &AtomicU64,
    counts: &Counts,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut conn = conn;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("/").to_string(),
    );
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let rel = target
        .split('?')
        .next()
        .unwrap_or("")
        .trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        return respond(&mut conn, "400 Bad Request", &[], b"");
    }
    let path = root.join(rel);
    let name = rel.rsplit('/').next().unwrap_or("").to_string();
    let delay = faults.lock().unwrap().delay;
    if let Some(d) = delay {
        std::thread::sleep(d);
    }
    match method.as_str() {
        "PUT" => {
            let len: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            reader.read_exact(&mut body)?;
            std::fs::create_dir_all(path.parent().unwrap())?;
            std::fs::write(&path, body)?;
            respond(&mut conn, "201 Created", &[], b"")
        }
        "HEAD" | "GET" => {
            let Ok(meta) = std::fs::metadata(&path).filter_ok(|m| m.is_file()) else {
                return respond(&mut conn, "404 Not Found", &[], b"");
            };
            let len = meta.len();
            let etag = format!(
                "\"{len}-{}\"",
                meta.modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos())
            );
            let common = vec![
                ("ETag".to_string(), etag.clone()),
                ("Accept-Ranges".to_string(), "bytes".to_string()),
                (
                    "Last-Modified".to_string(),
                    "Tue, 01 Dec 2026 00:00:00 GMT".to_string(),
                ),
            ];
            if method == "HEAD" {
                heads.fetch_add(1, Ordering::Relaxed);
                let mut h = common.clone();
                h.push(("Content-Length".into(), len.to_string()));
                return respond_head(&mut conn, "200 OK", &h);
            }
            gets.fetch_add(1, Ordering::Relaxed);
            if let Some(wanted) = headers.get("if-match") {
                if wanted != "*" && wanted.split(',').all(|tag| tag.trim() != etag) {
                    return respond(&mut conn, "412 Precondition Failed", &[], b"");
                }
            }
            {
                let mut f = faults.lock().unwrap();
                let start = headers
                    .get("range")
                    .and_then(|r| parse_range(r, len))
                    .map_or(0, |(start, _)| start);
                if f.gone_from.get(&name).is_some_and(|&from| start >= from) {
                    drop(f);
                    return respond(&mut conn, "404 Not Found", &[], b"");
                }
                if let Some(n) = f.unavailable.get_mut(&name).filter(|n| **n > 0) {
                    *n -= 1;
                    drop(f);
                    return respond(&mut conn, "503 Service Unavailable", &[], b"busy");
                }
            }
            let mut range = headers.get("range").and_then(|r| parse_range(r, len));
            {
                let mut f = faults.lock().unwrap();
                if let Some(n) = f.ignore_range.get_mut(&name).filter(|n| **n > 0) {
                    *n -= 1;
                    range = None;
                } else if let Some(n) = f.shift_range.get_mut(&name).filter(|n| **n > 0) {
                    *n -= 1;
                    range = range.map(|(a, b)| (a + 1, (b + 1).min(len)));
                }
            }
            let (start, end, status) = match range {
                Some((a, b)) => (a, b, "206 Partial Content"),
                None if headers.contains_key("range") => {
                    let h = vec![("Content-Range".into(), format!("bytes */{len}"))];
                    return respond(&mut conn, "416 Range Not Satisfiable", &h, b"");
                }
                None => (0, len, "200 OK"),
            };
            counts.lengths.lock().unwrap().push(end - start);
            let file = std::fs::File::open(&path)?;
            let mut body = vec![0; (end - start) as usize];
            use std::os::unix::fs::FileExt;
            file.read_exact_at(&mut body, start)?;
            let mut cut = None;
            {
                let mut f = faults.lock().unwrap();
                if let Some((at, n)) = f.flip.get_mut(&name) {
                    if *n > 0 && start <= *at && *at < end {
                        body[(*at - start) as usize] ^= 0x01;
                        *n -= 1;
                    }
                }
                if let Some(after) = f.cut_after.remove(&name) {
                    cut = Some(after.min(body.len() as u64) as usize);
                }
            }
            let mut h = common;
            let claimed = faults.lock().unwrap().huge_length.remove(&name);
            h.push((
                "Content-Length".into(),
                claimed.unwrap_or(body.len() as u64).to_string(),
            ));
            if range.is_some() {
                h.push((
                    "Content-Range".into(),
                    format!("bytes {start}-{}/{len}", end - 1),
                ));
            }
            respond_head(&mut conn, status, &h)?;
            let send = &body[..cut.unwrap_or(body.len())];
            conn.write_all(send)?;
            sent.fetch_add(send.len() as u64, Ordering::Relaxed);
            conn.flush()?;
            if cut.is_some() || claimed.is_some() {
                conn.shutdown(std::net::Shutdown::Both)?;
            }
            Ok(())
        }
        _ => respond(&mut conn, "405 Method Not Allowed", &[], b""),
    }
}

trait FilterOk<T> {
    fn filter_ok(self, f: impl FnOnce(&T) -> bool) -> Result<T, ()>;
}

impl<T, E> FilterOk<T> for Result<T, E> {
    fn filter_ok(self, f: impl FnOnce(&T) -> bool) -> Result<T, ()> {
        match self {
            Ok(t) if f(&t) => Ok(t),
            _ => Err(()),
        }
    }
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` within a file of `len` bytes, as `start..end`.
fn parse_range(value: &str, len: u64) -> Option<(u64, u64)> {
    let spec = value.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.is_empty(), b.is_empty()) {
        (true, false) => {
            let n: u64 = b.parse().ok()?;
            (len.saturating_sub(n), len)
        }
        (false, true) => (a.parse().ok()?, len),
        (false, false) => (a.parse().ok()?, (b.parse::<u64>().ok()? + 1).min(len)),
        _ => return None,
    };
    (start < end && start < len).then_some((start, end))
}

fn respond_head(
    conn: &mut TcpStream,
    status: &str,
    headers: &[(String, String)],
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes())
}

fn respond(
    conn: &mut TcpStream,
    status: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut h = headers.to_vec();
    h.push(("Content-Length".into(), body.len().to_string()));
    respond_head(conn, status, &h)?;
    conn.write_all(body)?;
    conn.flush()
}
