//! A stand-in of the Hugging Face hub's HTTP API on 127.0.0.1, serving the fixture folder
//! `bert-seqcls-single` as the repository `org/tiny-bert` (shared by the nn and CLI tests).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

pub const ID: &str = "org/tiny-bert";
pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// The repository: the fixture folder's files, plus files oxformer must never fetch.
pub fn repository() -> BTreeMap<String, Vec<u8>> {
    let folder =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/bert-seqcls-single");
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        files.insert(name, std::fs::read(&path).unwrap());
    }
    files.insert("pytorch_model.bin".to_string(), b"a pickle".to_vec());
    files.insert("onnx/model.onnx".to_string(), b"an onnx graph".to_vec());
    files.insert("1_Pooling/config.json".to_string(), b"{}".to_vec());
    files
}

#[derive(Default)]
struct State {
    /// Request lines (`GET /path`) in arrival order.
    requests: Vec<String>,
    /// A file whose next full download sends half its bytes and hangs up.
    cut: Option<String>,
    /// The `Authorization` header of each request (empty when absent).
    authorizations: Vec<String>,
    /// A file whose next full download sends half its bytes and then nothing for 60 s.
    stall: Option<String>,
}

/// A stand-in hub: `GET /api/models/{id}/revision/{rev}` lists the repository,
/// `GET /{id}/resolve/{rev}/{file}` serves a file (ranges, `ETag`, `X-Repo-Commit`); safetensors
/// files redirect to `/cdn/<sha256>` with `X-Linked-Etag`, as LFS files on the hub do.
pub struct StandIn {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
}

impl StandIn {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let files = Arc::new(repository());
        let (shared, base) = (Arc::clone(&state), endpoint.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (state, files, base) = (Arc::clone(&shared), Arc::clone(&files), base.clone());
                std::thread::spawn(move || serve(stream, &state, &files, &base));
            }
        });
        Self { endpoint, state }
    }

    pub fn requests(&self) -> Vec<String> {
        std::mem::take(&mut self.state.lock().unwrap().requests)
    }

    /// The `Authorization` headers received so far (one per request), and forgets them.
    pub fn authorizations(&self) -> Vec<String> {
        std::mem::take(&mut self.state.lock().unwrap().authorizations)
    }

    pub fn cut(&self, file: &str) {
        self.state.lock().unwrap().cut = Some(file.to_string());
    }

    pub fn stall(&self, file: &str) {
        self.state.lock().unwrap().stall = Some(file.to_string());
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Answers the requests of one connection (kept alive) until the client closes it.
fn serve(stream: TcpStream, state: &Mutex<State>, files: &BTreeMap<String, Vec<u8>>, base: &str) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut range = None;
        let mut authorization = String::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("range")
            {
                range = Some(value.trim().trim_start_matches("bytes=").to_string());
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("authorization")
            {
                authorization = value.trim().to_string();
            }
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        {
            let mut state = state.lock().unwrap();
            state.requests.push(format!("GET {path}"));
            state.authorizations.push(authorization);
        }
        let keep_going = answer(&mut stream, state, files, base, &path, range.as_deref());
        if !keep_going {
            return;
        }
    }
}

/// Writes the answer to one request; false when the connection was cut on purpose.
fn answer(
    stream: &mut TcpStream,
    state: &Mutex<State>,
    files: &BTreeMap<String, Vec<u8>>,
    base: &str,
    path: &str,
    range: Option<&str>,
) -> bool {
    let respond =
        |stream: &mut TcpStream, status: &str, headers: &[(String, String)], body: &[u8]| {
            let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body);
            let _ = stream.flush();
        };
    let not_found = |stream: &mut TcpStream, code: &str| {
        let headers = [("X-Error-Code".to_string(), code.to_string())];
        respond(
            stream,
            "404 Not Found",
            &headers,
            b"{\"error\":\"not found\"}",
        );
        true
    };
    let revision_ok = |revision: &str| matches!(revision, "main" | "v1" | COMMIT);

    if let Some(rest) = path.strip_prefix(&format!("/api/models/{ID}/revision/")) {
        if !revision_ok(rest) {
            return not_found(stream, "RevisionNotFound");
        }
        let siblings: Vec<String> = files
            .keys()
            .map(|name| format!("{{\"rfilename\":\"{name}\"}}"))
            .collect();
        let body = format!(
            "{{\"id\":\"{ID}\",\"sha\":\"{COMMIT}\",\"siblings\":[{}]}}",
            siblings.join(",")
        );
        respond(stream, "200 OK", &[], body.as_bytes());
        return true;
    }
    if path.starts_with("/api/") {
        return not_found(stream, "RepoNotFound");
    }
    let (file, lfs_redirect) = if let Some(rest) = path.strip_prefix(&format!("/{ID}/resolve/")) {
        let Some((revision, file)) = rest.split_once('/') else {
            return not_found(stream, "EntryNotFound");
        };
        if !revision_ok(revision) {
            return not_found(stream, "RevisionNotFound");
        }
        (file.to_string(), file.ends_with(".safetensors"))
    } else if let Some(hash) = path.strip_prefix("/cdn/") {
        match files.iter().find(|(_, bytes)| sha256_hex(bytes) == hash) {
            Some((name, _)) => (name.clone(), false),
            None => return not_found(stream, "EntryNotFound"),
        }
    } else {
        return not_found(stream, "RepoNotFound");
    };
    let Some(bytes) = files.get(&file) else {
        return not_found(stream, "EntryNotFound");
    };
    let etag = sha256_hex(bytes);
    let mut headers = vec![("X-Repo-Commit".to_string(), COMMIT.to_string())];
    if lfs_redirect {
        headers.push(("X-Linked-Etag".to_string(), format!("\"{etag}\"")));
        headers.push(("X-Linked-Size".to_string(), bytes.len().to_string()));
        headers.push(("Location".to_string(), format!("{base}/cdn/{etag}")));
        respond(stream, "302 Found", &headers, b"");
        return true;
    }
    headers.push(("ETag".to_string(), format!("\"{etag}\"")));
    let (start, end) = match range.and_then(|range| range.split_once('-')) {
        Some((start, end)) => {
            let start: usize = start.parse().unwrap_or(0);
            let end = end.parse::<usize>().map_or(bytes.len(), |end| end + 1);
            (start.min(bytes.len()), end.min(bytes.len()))
        }
        None => (0, bytes.len()),
    };
    let is_probe = range == Some("0-0");
    if !is_probe {
        let mut state = state.lock().unwrap();
        let stall = state.stall.as_deref() == Some(file.as_str());
        if stall || state.cut.as_deref() == Some(file.as_str()) {
            state.cut = None;
            state.stall = None;
            drop(state);
            // announce the whole body, send half of it, hang up
            let head = format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nETag: \"{etag}\"\r\nX-Repo-Commit: {COMMIT}\r\n\r\n",
                end - start,
                end - 1,
                bytes.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&bytes[start..start + (end - start) / 2]);
            let _ = stream.flush();
            if stall {
                std::thread::sleep(std::time::Duration::from_secs(60));
            }
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return false;
        }
    }
    if range.is_some() {
        headers.push((
            "Content-Range".to_string(),
            format!("bytes {start}-{}/{}", end.max(1) - 1, bytes.len()),
        ));
        respond(stream, "206 Partial Content", &headers, &bytes[start..end]);
    } else {
        respond(stream, "200 OK", &headers, bytes);
    }
    true
}
