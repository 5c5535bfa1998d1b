//! Object storage: where the batches of diskless topics live. An object is written once
//! under a key no other write uses and never changed; `object_store` speaks S3 (and
//! anything S3-compatible) or a shared directory.

use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;

/// A parsed `cluster.object_store` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectStoreUrl {
    /// `s3://bucket/prefix`.
    S3 {
        /// The bucket.
        bucket: String,
        /// Key prefix inside the bucket (may be empty), without slashes at either end.
        prefix: String,
    },
    /// `file:///dir`: a directory every broker of the cluster sees (NFS, a shared volume,
    /// or one machine's disk in tests).
    File {
        /// The absolute directory.
        dir: std::path::PathBuf,
    },
}

impl ObjectStoreUrl {
    /// Parses `s3://bucket[/prefix]` or `file:///absolute/dir`.
    pub fn parse(url: &str) -> Result<ObjectStoreUrl, String> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("{url:?} names no bucket"));
            }
            return Ok(ObjectStoreUrl::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(format!("{url:?} is not file:///absolute/dir"));
            }
            return Ok(ObjectStoreUrl::File { dir: path.into() });
        }
        Err(format!(
            "{url:?} is neither s3://bucket/prefix nor file:///dir"
        ))
    }

    /// Opens the store. S3 takes its endpoint, region and credentials from the
    /// environment (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP` for a plain-HTTP endpoint). A file store's
    /// directory is created if missing.
    pub fn open(&self) -> Result<(Arc<dyn ObjectStore>, ObjectPath), String> {
        match self {
            ObjectStoreUrl::S3 { bucket, prefix } => {
                let store = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .map_err(|e| format!("s3://{bucket}: {e}"))?;
                Ok((Arc::new(store), ObjectPath::from(prefix.as_str())))
            }
            ObjectStoreUrl::File { dir } => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| format!("{}: {e}", dir.display()))?;
                Ok((Arc::new(store), ObjectPath::default()))
            }
        }
    }
}

/// The key of a new object: under `prefix`, by broker and a random id, so that no two
/// uploads (two brokers, or a retry after a crash) ever share one.
pub fn object_key(prefix: &ObjectPath, node_id: i32, id: uuid::Uuid) -> ObjectPath {
    prefix
        .child("objects")
        .child(format!("b{node_id}"))
        .child(format!("{}.batches", id.simple()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            ObjectStoreUrl::parse("s3://b/p/q/").unwrap(),
            ObjectStoreUrl::S3 {
                bucket: "b".into(),
                prefix: "p/q".into()
            }
        );
        assert_eq!(
            ObjectStoreUrl::parse("s3://b").unwrap(),
            ObjectStoreUrl::S3 {
                bucket: "b".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            ObjectStoreUrl::parse("file:///srv/rafka").unwrap(),
            ObjectStoreUrl::File {
                dir: "/srv/rafka".into()
            }
        );
        for bad in ["s3://", "file://relative", "http://x", ""] {
            assert!(ObjectStoreUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_are_unique_per_id() {
        let p = ObjectPath::from("pre");
        let a = object_key(&p, 1, uuid::Uuid::new_v4());
        let b = object_key(&p, 1, uuid::Uuid::new_v4());
        assert_ne!(a, b);
        assert!(a.as_ref().starts_with("pre/objects/b1/"));
    }

    #[tokio::test]
    async fn file_store_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().join("objs").display());
        let (store, prefix) = ObjectStoreUrl::parse(&url).unwrap().open().unwrap();
        let key = object_key(&prefix, 3, uuid::Uuid::new_v4());
        store
            .put(&key, bytes::Bytes::from_static(b"0123456789").into())
            .await
            .unwrap();
        let got = store.get_range(&key, 2..5).await.unwrap();
        assert_eq!(&got[..], b"234");
    }
}
