//! A fault-injecting TCP proxy for tests: sits between `ftc` and `fts` on loopback and, per
//! connection, cuts the link after N bytes, flips one byte, stalls, or throttles. It counts
//! every byte it forwards towards the server, so tests can prove what was (not) re-sent.
//! The bytes are TLS records: the proxy sees neither messages nor content.

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

/// What the proxy does to one connection's client-to-server bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything.
    Clean,
    /// Forward this many bytes, then close both sides.
    CutAfter(u64),
    /// Invert the byte at this offset (counted from the connection's first byte).
    FlipAt(u64),
    /// Forward this many bytes, then hold the connection open without forwarding more.
    StallAfter(u64),
    /// Forward at most this many bytes per second.
    Throttle(u64),
    /// Forward server-to-client bytes (downloads) at most this fast; uploads are untouched.
    ThrottleDown(u64),
}

/// A running proxy; stops accepting when dropped.
pub struct FaultProxy {
    pub addr: SocketAddr,
    upstream_bytes: Arc<AtomicU64>,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    /// Proxies to `upstream`; the i-th connection gets `faults[i]`, later ones are clean.
    /// Clients reach the upstream server through it as themselves (TLS goes end to end), so
    /// its address is registered with the upstream's login.
    pub fn start(upstream: SocketAddr, faults: Vec<Fault>) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let proxy = FaultProxy {
            addr: listener.local_addr().unwrap(),
            upstream_bytes: Arc::default(),
            connections: Arc::default(),
            stop: Arc::default(),
        };
        let (bytes, connections, stop) = (
            Arc::clone(&proxy.upstream_bytes),
            Arc::clone(&proxy.connections),
            Arc::clone(&proxy.stop),
        );
        if let Some(login) = crate::registered(&upstream.to_string()) {
            crate::register(&proxy.address(), login);
        }
        let faults = Arc::new(Mutex::new(faults.into_iter()));
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        connections.fetch_add(1, Ordering::Relaxed);
                        let fault = faults.lock().unwrap().next().unwrap_or(Fault::Clean);
                        let bytes = Arc::clone(&bytes);
                        thread::spawn(move || relay(client, upstream, fault, &bytes));
                    }
                    Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => break,
                }
            }
        });
        proxy
    }

    /// `HOST:PORT` for ftc.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Bytes forwarded from clients to the server, over all connections.
    pub fn upstream_bytes(&self) -> u64 {
        self.upstream_bytes.load(Ordering::Relaxed)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn relay(client: TcpStream, upstream: SocketAddr, fault: Fault, counter: &AtomicU64) {
    let Ok(server) = TcpStream::connect(upstream) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, server_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let (server_read, client_write) = (server, client);
    let down_rate = match fault {
        Fault::ThrottleDown(rate) => Some(rate),
        _ => None,
    };
    let downstream = thread::spawn(move || copy_plain(server_read, client_write, down_rate));
    copy_with_fault(client_read, server_write, fault, counter);
    let _ = downstream.join();
}

/// Server to client: untouched, but optionally slowed down.
fn copy_plain(mut from: TcpStream, mut to: TcpStream, rate: Option<u64>) {
    let mut buffer = [0u8; 64 * 1024];
    let (started, mut forwarded) = (Instant::now(), 0u64);
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Some(rate) = rate {
                    let due = Duration::from_secs_f64((forwarded + n as u64) as f64 / rate as f64);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        thread::sleep(wait);
                    }
                }
                forwarded += n as u64;
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Client to server, with the fault applied.
fn copy_with_fault(mut from: TcpStream, mut to: TcpStream, fault: Fault, counter: &AtomicU64) {
    let mut buffer = [0u8; 64 * 1024];
    let mut forwarded = 0u64;
    let started = Instant::now();
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &mut buffer[..n];
        match fault {
            Fault::CutAfter(limit) | Fault::StallAfter(limit) if forwarded + n as u64 >= limit => {
                let keep = (limit - forwarded) as usize;
                let _ = to.write_all(&chunk[..keep]);
                counter.fetch_add(keep as u64, Ordering::Relaxed);
                if matches!(fault, Fault::StallAfter(_)) {
                    // Hold both sockets open, reading and discarding, until the peers give up.
                    while matches!(from.read(&mut buffer), Ok(n) if n > 0) {}
                }
                let _ = from.shutdown(Shutdown::Both);
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
            Fault::FlipAt(at) if at >= forwarded && at < forwarded + n as u64 => {
                chunk[(at - forwarded) as usize] ^= 0xff;
            }
            Fault::Throttle(rate) => {
                let due = Duration::from_secs_f64((forwarded + n as u64) as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    thread::sleep(wait);
                }
            }
            _ => {}
        }
        if to.write_all(chunk).is_err() {
            break;
        }
        forwarded += n as u64;
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
    let _ = to.shutdown(Shutdown::Write);
}
