//! Request framing and decoding for every API key and version: arbitrary bytes fed to a
//! connection in two chunks (so frames also arrive split). Decoding may fail; it must
//! never panic, abort or allocate from an unchecked count.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rafka_protocol::Connection;

fuzz_target!(|data: &[u8]| {
    let mut conn = Connection::new(1 << 20);
    let mid = data.first().map_or(0, |b| *b as usize % (data.len() + 1));
    for chunk in [&data[..mid], &data[mid..]] {
        conn.receive(chunk);
        loop {
            match conn.next_request() {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                // A bad frame closes the connection: nothing after it is read.
                Err(_) => return,
            }
        }
    }
});
