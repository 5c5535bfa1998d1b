//! The byte ranges of objects this broker read for fetches: ONE cache shared by all of
//! them, bounded by `fetch_cache_bytes`, least recently used evicted first. Concurrent
//! misses for the same range share one read of the object store.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, Shared};
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;

/// A range of an object: its key, first byte, length.
pub type RangeKey = (Arc<str>, u64, u64);

type Read = Shared<BoxFuture<'static, Result<Bytes, Arc<str>>>>;

#[derive(Default)]
struct Inner {
    entries: HashMap<RangeKey, (Bytes, u64)>,
    /// Use tick → key, oldest first.
    order: BTreeMap<u64, RangeKey>,
    tick: u64,
    bytes: u64,
    /// Reads under way, shared by the fetches that missed the same range.
    reading: HashMap<RangeKey, Read>,
}

/// The range cache.
pub struct RangeCache {
    capacity: u64,
    inner: parking_lot::Mutex<Inner>,
}

impl RangeCache {
    /// A cache of at most `capacity` bytes (0: nothing is kept).
    pub fn new(capacity: u64) -> RangeCache {
        RangeCache {
            capacity,
            inner: parking_lot::Mutex::new(Inner::default()),
        }
    }

    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        self.inner.lock().bytes
    }

    /// Ranges held now.
    pub fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `len` bytes of object `key` from `start`: from the cache, else read (once, however
    /// many fetches ask at the same time) and kept.
    pub async fn get(
        &self,
        store: &Arc<dyn ObjectStore>,
        key: &Arc<str>,
        start: u64,
        len: u64,
    ) -> Result<Bytes, Arc<str>> {
        let k: RangeKey = (key.clone(), start, len);
        let read = {
            let mut inner = self.inner.lock();
            inner.tick += 1;
            let tick = inner.tick;
            if let Some((bytes, used)) = inner.entries.get_mut(&k) {
                let (bytes, old) = (bytes.clone(), std::mem::replace(used, tick));
                inner.order.remove(&old);
                inner.order.insert(tick, k);
                return Ok(bytes);
            }
            match inner.reading.get(&k) {
                Some(r) => r.clone(),
                None => {
                    let store = store.clone();
                    let path = ObjectPath::from(key.as_ref());
                    let r = async move {
                        store
                            .get_range(&path, start..start + len)
                            .await
                            .map_err(|e| Arc::<str>::from(e.to_string()))
                    }
                    .boxed()
                    .shared();
                    inner.reading.insert(k.clone(), r.clone());
                    r
                }
            }
        };
        let got = read.await;
        let mut inner = self.inner.lock();
        inner.reading.remove(&k);
        if let Ok(bytes) = &got {
            self.insert(&mut inner, k, bytes.clone());
        }
        got
    }

    fn insert(&self, inner: &mut Inner, k: RangeKey, bytes: Bytes) {
        let size = bytes.len() as u64;
        if size > self.capacity || inner.entries.contains_key(&k) {
            return;
        }
        while inner.bytes + size > self.capacity {
            let Some((_, old)) = inner.order.pop_first() else {
                break;
            };
            if let Some((b, _)) = inner.entries.remove(&old) {
                inner.bytes -= b.len() as u64;
            }
        }
        inner.tick += 1;
        let tick = inner.tick;
        inner.order.insert(tick, k.clone());
        inner.entries.insert(k, (bytes, tick));
        inner.bytes += size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_by_bytes_least_recently_used_first() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let key: Arc<str> = Arc::from("o/1");
        store
            .put(
                &ObjectPath::from("o/1"),
                Bytes::from(vec![7u8; 1000]).into(),
            )
            .await
            .unwrap();
        let cache = RangeCache::new(250);
        for start in [0, 100, 200] {
            let b = cache.get(&store, &key, start, 100).await.unwrap();
            assert_eq!(b.len(), 100);
        }
        // 300 bytes asked, 250 allowed: the oldest range went.
        assert_eq!((cache.len(), cache.bytes()), (2, 200));
        // Touch 100.., then add 300..: 200.. is now the oldest and goes.
        cache.get(&store, &key, 100, 100).await.unwrap();
        cache.get(&store, &key, 300, 100).await.unwrap();
        {
            let inner = cache.inner.lock();
            let mut starts: Vec<u64> = inner.entries.keys().map(|k| k.1).collect();
            starts.sort();
            assert_eq!(starts, vec![100, 300]);
            assert_eq!(inner.bytes, 200);
        }
        // Larger than the whole cache: served, not kept.
        assert_eq!(cache.get(&store, &key, 0, 600).await.unwrap().len(), 600);
        assert_eq!(cache.bytes(), 200);
    }
}
