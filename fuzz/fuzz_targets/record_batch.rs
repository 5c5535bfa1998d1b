//! Record-batch validation: splitting a record set into batches, the header and CRC
//! checks, and decoding the records of an uncompressed batch.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rafka_core::RecordBatch;

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(batches) = RecordBatch::split_all(bytes.clone()) {
        for b in batches {
            if b.validate().is_ok() {
                let _ = b.decode_uncompressed();
            }
        }
    }
    if let Ok(b) = RecordBatch::parse(bytes) {
        let _ = b.validate();
        let _ = b.decode_uncompressed();
    }
});
