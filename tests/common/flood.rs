//! Slow clients, as an attacker opens them against the daemon or an agent: each on its
//! own thread, noting when the server closed it. Three kinds, in turn: a head sent one
//! byte a second (slowloris), a full head then a body one byte a second, and a silent
//! connection that sends nothing. Stopped (and joined) when dropped.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Open slow connections and how many the server closed.
pub struct Flood {
    closed: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// How many were opened.
    pub size: usize,
}

impl Flood {
    /// Opens `size` slow connections to `addr`; the body-dripping ones send `body_head`
    /// (a full request head announcing a large body) first.
    pub fn open(addr: SocketAddr, size: usize, body_head: &str) -> Flood {
        let closed = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..size)
            .map(|n| {
                let first = match n % 3 {
                    0 => b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ".to_vec(),
                    1 => body_head.as_bytes().to_vec(),
                    _ => Vec::new(),
                };
                let drip = n % 3 != 2;
                let (closed, stop) = (Arc::clone(&closed), Arc::clone(&stop));
                std::thread::spawn(move || {
                    slow_client(addr, &first, drip, &stop);
                    closed.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        Flood {
            closed,
            stop,
            threads,
            size,
        }
    }

    /// How many connections the server closed (or refused) so far.
    pub fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }

    /// How many are still open.
    pub fn open_now(&self) -> usize {
        self.size - self.closed()
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Connects, sends `first`, then one byte a second when `drip` (else nothing), until the
/// server closes the connection or `stop` is set.
fn slow_client(addr: SocketAddr, first: &[u8], drip: bool, stop: &AtomicBool) {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    if !first.is_empty() && stream.write_all(first).is_err() {
        return;
    }
    let mut next_byte = Instant::now() + Duration::from_secs(1);
    let mut buf = [0; 1024];
    while !stop.load(Ordering::SeqCst) {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
        if drip && Instant::now() >= next_byte {
            if stream.write_all(b"a").is_err() {
                return;
            }
            next_byte += Duration::from_secs(1);
        }
    }
}

/// Sends `GET path` on a new connection; true when the server closed it without a word
/// within `within` (refused at its connection cap).
pub fn refused(addr: SocketAddr, path: &str, within: Duration) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return true;
    };
    let _ = stream.set_read_timeout(Some(within));
    let _ = stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes());
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => answer.is_empty(),
        Err(e) => e.kind() == ErrorKind::ConnectionReset,
    }
}
