//! A local HTTP server answering an SDK client with canned responses, one per request in order (the last one
//! repeated): for the answers no emulator produces on demand (an inactive VPC function, throttling, a
//! garbled body). The real client, its HTTP stack and its deserializers then parse them as they parse AWS's,
//! which a mocked client interceptor would skip.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone)]
pub struct CannedResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl CannedResponse {
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        CannedResponse {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

pub struct CannedHttp {
    /// The URL to give the client as its endpoint.
    pub url: String,
    requests: Arc<AtomicUsize>,
}

impl CannedHttp {
    /// Starts the server on a free loopback port; it lives as long as the test's runtime.
    pub async fn start(answers: Vec<CannedResponse>) -> CannedHttp {
        assert!(!answers.is_empty(), "CannedHttp needs at least one answer");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind a loopback port: {e}"));
        let url = match listener.local_addr() {
            Ok(address) => format!("http://{address}"),
            Err(e) => panic!("the listener's address: {e}"),
        };
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let answers = Arc::new(answers);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let answers = answers.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    if !read_request(&mut stream).await {
                        return;
                    }
                    let index = counter.fetch_add(1, Ordering::SeqCst);
                    let answer = &answers[index.min(answers.len() - 1)];
                    let _ = stream.write_all(&encode(answer)).await;
                });
            }
        });
        CannedHttp { url, requests }
    }

    /// How many requests were answered so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn encode(answer: &CannedResponse) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {} Canned\r\nContent-Length: {}\r\nConnection: close\r\n",
        answer.status,
        answer.body.len()
    );
    for (name, value) in &answer.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(answer.body.as_bytes());
    bytes
}

/// Reads the request head and as much body as its Content-Length says, so the client sees a clean answer.
/// False when the client went away first.
async fn read_request(stream: &mut TcpStream) -> bool {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
        }
        if let Some(at) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&seen[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while seen.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_in_order_and_repeats_the_last() {
        let server = CannedHttp::start(vec![
            CannedResponse::new(502, "first").header("X-Test", "one"),
            CannedResponse::new(200, "then"),
        ])
        .await;
        let mut bodies = Vec::new();
        for _ in 0..3 {
            let address = server.url.trim_start_matches("http://").to_string();
            let mut stream = TcpStream::connect(address).await.unwrap();
            stream
                .write_all(b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi")
                .await
                .unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.unwrap();
            bodies.push(answer);
        }
        assert!(bodies[0].starts_with("HTTP/1.1 502") && bodies[0].contains("X-Test: one"));
        assert!(bodies[1].ends_with("then") && bodies[2].ends_with("then"));
        assert_eq!(server.requests(), 3);
    }
}
