//! A TCP proxy between a client and the broker that can drop broker answers: the fault
//! injection for the producer's retry and buffer tests. It parses frame boundaries only
//! (4-byte size prefix), remembers the API key of each request by correlation id, and asks
//! a policy whether to forward each response.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does with responses.
#[derive(Default)]
pub struct Faults {
    /// Drop every `n`th Produce response (0: never).
    pub drop_every_nth_produce: AtomicUsize,
    /// Drop every response while set.
    pub drop_all: AtomicBool,
    /// Produce responses dropped so far.
    pub dropped: AtomicUsize,
    produce_seen: AtomicUsize,
}

/// A running proxy.
pub struct Proxy {
    /// `host:port` clients connect to.
    pub address: String,
    /// The fault policy, changeable while running.
    pub faults: Arc<Faults>,
    upstream: Arc<Mutex<Option<String>>>,
}

impl Proxy {
    /// Listens on a free port; forwards once `set_upstream` is called.
    pub async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let faults = Arc::new(Faults::default());
        let upstream: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let (f, u) = (faults.clone(), upstream.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let target = u.lock().unwrap().clone();
                let Some(target) = target else { continue };
                let f = f.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&target).await {
                        pipe(client, server, f).await;
                    }
                });
            }
        });
        Proxy {
            address,
            faults,
            upstream,
        }
    }

    /// Where to forward to (the broker's real address).
    pub fn set_upstream(&self, addr: &str) {
        *self.upstream.lock().unwrap() = Some(addr.to_string());
    }
}

async fn read_frame(s: &mut (impl AsyncReadExt + Unpin)) -> Option<Vec<u8>> {
    let size = s.read_i32().await.ok()?;
    let mut buf = vec![0u8; 4 + size as usize];
    buf[..4].copy_from_slice(&size.to_be_bytes());
    s.read_exact(&mut buf[4..]).await.ok()?;
    Some(buf)
}

async fn pipe(client: TcpStream, server: TcpStream, faults: Arc<Faults>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let keys: Arc<Mutex<HashMap<i32, i16>>> = Arc::default();
    let k = keys.clone();
    let up = tokio::spawn(async move {
        while let Some(frame) = read_frame(&mut cr).await {
            let api_key = i16::from_be_bytes([frame[4], frame[5]]);
            let corr = i32::from_be_bytes([frame[8], frame[9], frame[10], frame[11]]);
            k.lock().unwrap().insert(corr, api_key);
            if sw.write_all(&frame).await.is_err() {
                return;
            }
        }
    });
    while let Some(frame) = read_frame(&mut sr).await {
        let corr = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let api_key = keys.lock().unwrap().remove(&corr);
        let mut drop = faults.drop_all.load(Ordering::SeqCst);
        if api_key == Some(0) {
            let n = faults.drop_every_nth_produce.load(Ordering::SeqCst);
            let seen = faults.produce_seen.fetch_add(1, Ordering::SeqCst) + 1;
            if n > 0 && seen.is_multiple_of(n) {
                drop = true;
            }
            if drop {
                faults.dropped.fetch_add(1, Ordering::SeqCst);
            }
        }
        if drop {
            continue;
        }
        if cw.write_all(&frame).await.is_err() {
            break;
        }
    }
    up.abort();
}
