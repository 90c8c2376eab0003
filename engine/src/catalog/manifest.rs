//! The manifest: which tables a catalog holds and which version of each is
//! current. Small (a few records per table), rewritten whole on every change
//! and replaced by an atomic rename, so a reader sees the old manifest or the
//! new one, never a mix. Byte layout in docs/CATALOG.md.

use std::io::Write;
use std::path::{Path, PathBuf};

use bincode::Options as _;
use serde::{Deserialize, Serialize};

use super::error::{io_err, CatalogError};
use crate::publish::sync_dir;

pub(crate) const MAGIC: [u8; 8] = *b"SCONECAT";
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Magic, version, reserved, body length, body checksum.
const PREAMBLE: usize = 32;
/// A bound on the body, so a damaged length cannot ask for a huge allocation.
const MAX_BODY: u64 = 64 << 20;
pub(crate) const MANIFEST: &str = "manifest";
const TEMP_PREFIX: &str = "manifest.tmp-";

/// One version of a table: its file and the identity it had when it was
/// swapped in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// 1, 2, ...: never reused within a table name, so a version's file name
    /// never refers to another file.
    pub version: u64,
    /// The version's file, relative to the catalog folder (`tables/<name>/<version>.scone`).
    pub file: String,
    /// xxh3-64 of the file's 4096-byte header block (which holds every
    /// section's checksum, so it identifies the whole file).
    pub header_xxh3: u64,
    pub file_len: u64,
    pub rows: u64,
    /// When the version was added, seconds since the epoch.
    pub created_unix: u64,
}

/// A named table: its current version and the replaced versions whose files
/// may still be held by readers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TableEntry {
    pub name: String,
    pub current: VersionRecord,
    pub retired: Vec<VersionRecord>,
    pub next_version: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    /// Incremented by every change.
    pub generation: u64,
    pub tables: Vec<TableEntry>,
}

fn bincode_options(limit: u64) -> impl bincode::Options {
    bincode::DefaultOptions::new().with_fixint_encoding().with_little_endian().with_limit(limit)
}

impl Manifest {
    pub fn entry(&self, name: &str) -> Option<&TableEntry> {
        self.tables.iter().find(|t| t.name == name)
    }

    pub fn entry_mut(&mut self, name: &str) -> Option<&mut TableEntry> {
        self.tables.iter_mut().find(|t| t.name == name)
    }

    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain structs of integers and strings cannot fail.
        let body = bincode_options(u64::MAX).serialize(self).unwrap_or_default();
        let mut out = Vec::with_capacity(PREAMBLE + body.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&body).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    pub fn decode(bytes: &[u8], path: &Path) -> Result<Manifest, CatalogError> {
        let damaged = |reason: String| CatalogError::DamagedManifest { path: path.to_path_buf(), reason };
        let (Some(magic), Some(rest)) = (bytes.get(..8), bytes.get(8..PREAMBLE)) else {
            return Err(damaged(format!("{} bytes, shorter than the {PREAMBLE}-byte preamble", bytes.len())));
        };
        if magic != MAGIC {
            return Err(damaged(format!("bad magic bytes {magic:02x?}, expected `SCONECAT`")));
        }
        let word = |at: usize| u64::from_le_bytes(rest[at..at + 8].try_into().unwrap_or([0; 8]));
        let version = u32::from_le_bytes(rest[..4].try_into().unwrap_or([0; 4]));
        if version != FORMAT_VERSION {
            return Err(CatalogError::UnsupportedVersion {
                path: path.to_path_buf(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let reserved = u32::from_le_bytes(rest[4..8].try_into().unwrap_or([0; 4]));
        if reserved != 0 {
            return Err(damaged(format!("reserved field is {reserved:#x}, not 0")));
        }
        let (len, stored) = (word(8), word(16));
        let body = &bytes[PREAMBLE..];
        if len > MAX_BODY || len != body.len() as u64 {
            return Err(damaged(format!("body length field says {len} bytes but {} follow (truncated?)", body.len())));
        }
        let computed = xxhash_rust::xxh3::xxh3_64(body);
        if computed != stored {
            return Err(damaged(format!("checksum mismatch (stored {stored:#018x}, computed {computed:#018x})")));
        }
        let m: Manifest = bincode_options(len).deserialize(body).map_err(|e| damaged(format!("cannot decode: {e}")))?;
        m.check().map_err(damaged)?;
        Ok(m)
    }

    /// What a checksum cannot catch: a manifest written by a buggy writer.
    fn check(&self) -> Result<(), String> {
        let mut names = std::collections::HashSet::new();
        for t in &self.tables {
            super::check_name(&t.name).map_err(|r| format!("table name `{}`: {r}", t.name))?;
            if !names.insert(&t.name) {
                return Err(format!("table `{}` is listed twice", t.name));
            }
            for v in std::iter::once(&t.current).chain(&t.retired) {
                if v.version == 0 || v.version >= t.next_version || v.file != version_file(&t.name, v.version) {
                    return Err(format!("table `{}`: version {} ({}) is inconsistent", t.name, v.version, v.file));
                }
            }
        }
        Ok(())
    }

    /// Reads the manifest of the catalog in `dir`.
    pub fn read(dir: &Path) -> Result<Manifest, CatalogError> {
        let path = dir.join(MANIFEST);
        match std::fs::read(&path) {
            Ok(bytes) => Manifest::decode(&bytes, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(CatalogError::NotACatalog { path: dir.into() }),
            Err(e) => Err(io_err(path, "cannot read the catalog manifest")(e)),
        }
    }

    /// Replaces the manifest: write a temporary file, fsync it, rename it over
    /// the manifest, fsync the folder. Callers hold the catalog's writer lock.
    pub fn write(&self, dir: &Path) -> Result<(), CatalogError> {
        let path = dir.join(MANIFEST);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let tmp = dir.join(format!("{TEMP_PREFIX}{}-{nanos}", std::process::id()));
        let written = (|| {
            let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(&self.encode())?;
            // No retry after a failed fsync: the error goes up and the old
            // manifest stays in force.
            f.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(io_err(&path, "cannot write the new manifest; the catalog is unchanged")(e));
        }
        if let Err(e) = std::fs::rename(&tmp, &path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(io_err(&path, "cannot rename the new manifest into place; the catalog is unchanged")(e));
        }
        sync_dir(dir)
            .map_err(io_err(dir, "cannot fsync the catalog folder; the change is visible but may not survive a crash"))
    }
}

/// Whether a file in the catalog folder is a manifest temporary file.
pub(crate) fn is_manifest_temp(file_name: &str) -> bool {
    file_name.starts_with(TEMP_PREFIX)
}

/// Where version `version` of table `name` lives, relative to the catalog folder.
pub(crate) fn version_file(name: &str, version: u64) -> String {
    format!("tables/{name}/{version}.scone")
}

/// The absolute path of a version's file.
pub(crate) fn version_path(dir: &Path, rec: &VersionRecord) -> PathBuf {
    dir.join(&rec.file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let rec = |v: u64| VersionRecord {
            version: v,
            file: version_file("emb", v),
            header_xxh3: 7,
            file_len: 8192,
            rows: 3,
            created_unix: 1,
        };
        Manifest {
            generation: 4,
            tables: vec![TableEntry { name: "emb".into(), current: rec(2), retired: vec![rec(1)], next_version: 3 }],
        }
    }

    #[test]
    fn round_trips() {
        let m = sample();
        assert_eq!(Manifest::decode(&m.encode(), Path::new("m")).unwrap(), m);
    }

    #[test]
    fn every_damage_is_an_error_naming_the_file() {
        let good = sample().encode();
        let mut cases: Vec<(Vec<u8>, &str)> = vec![
            (Vec::new(), "shorter than"),
            (good[..good.len() - 1].to_vec(), "truncated"),
            (b"NOTACATALOGFILE_AT_ALL_REALLY!!!".to_vec(), "bad magic"),
        ];
        for at in [24, 40, good.len() - 1] {
            let mut b = good.clone();
            b[at] ^= 1;
            cases.push((b, "checksum mismatch"));
        }
        let mut b = good.clone();
        b[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        cases.push((b, "body length"));
        for (bytes, want) in cases {
            let e = Manifest::decode(&bytes, Path::new("/cat/manifest")).unwrap_err().to_string();
            assert!(e.starts_with("/cat/manifest: the catalog manifest is damaged"), "{e}");
            assert!(e.contains(want), "{e:?} should say {want:?}");
        }
        let mut b = good.clone();
        b[8] = 9;
        let e = Manifest::decode(&b, Path::new("/cat/manifest")).unwrap_err().to_string();
        assert!(e.contains("format version 9 is not supported"), "{e}");
        // Every single-byte truncation is an error, never a panic.
        for len in 0..good.len() {
            assert!(Manifest::decode(&good[..len], Path::new("m")).is_err());
        }
    }

    #[test]
    fn an_inconsistent_manifest_is_rejected() {
        let mut m = sample();
        m.tables[0].current.file = "../../etc/passwd".into();
        let e = Manifest::decode(&m.encode(), Path::new("m")).unwrap_err().to_string();
        assert!(e.contains("inconsistent"), "{e}");
        let mut m = sample();
        m.tables[0].name = "../x".into();
        assert!(Manifest::decode(&m.encode(), Path::new("m")).is_err());
    }
}
