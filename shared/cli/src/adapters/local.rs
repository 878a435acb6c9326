//! Local files in place of S3: reading a backup the way the validate function reads an S3
//! object (the first [`HEAD_LIMIT`] bytes and the last [`TAIL_LIMIT`] bytes, never the whole
//! file), finding backups under paths, and [`LocalBucket`], a folder standing in for the bucket.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::Context;
use bakdrop_core::backup::{HEAD_LIMIT, TAIL_LIMIT};
use bakdrop_core::model::object::ObjectRef;
use bakdrop_core::ports::{ByteRange, ObjectReader, ReadError};

/// The head, the tail (if the file is longer than the head) and the size of a file.
#[derive(Debug)]
pub struct HeadTail {
    pub head: Vec<u8>,
    pub tail: Option<Vec<u8>>,
    pub size: u64,
}

/// Reads head and tail of `path`.
pub fn read_head_tail(path: &Path) -> anyhow::Result<HeadTail> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let size = file
        .metadata()
        .with_context(|| format!("cannot stat {}", path.display()))?
        .len();
    let head_len = size.min(HEAD_LIMIT as u64);
    let mut head = vec![0; usize::try_from(head_len).unwrap_or(HEAD_LIMIT)];
    file.read_exact(&mut head)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let tail_len = (size - head_len).min(TAIL_LIMIT as u64);
    let tail = if tail_len > 0 {
        let mut tail = vec![0; usize::try_from(tail_len).unwrap_or(TAIL_LIMIT)];
        file.seek(SeekFrom::End(-i64::try_from(tail_len).unwrap_or(0)))?;
        file.read_exact(&mut tail)
            .with_context(|| format!("cannot read the end of {}", path.display()))?;
        Some(tail)
    } else {
        None
    };
    Ok(HeadTail { head, tail, size })
}

/// One file on this machine as an object store of one object: [`bakdrop_core::validate::read_backup`]
/// reads it as validation reads an S3 object (ranged reads, counted by the caller).
#[derive(Debug, Clone)]
pub struct PathReader {
    pub path: PathBuf,
}

impl PathReader {
    /// The object standing for the file (its size read now).
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn object(&self) -> anyhow::Result<ObjectRef> {
        let size = std::fs::metadata(&self.path)
            .with_context(|| format!("cannot stat {}", self.path.display()))?
            .len();
        Ok(ObjectRef {
            bucket: String::new(),
            key: self.path.display().to_string(),
            version_id: None,
            etag: None,
            size,
        })
    }
}

impl ObjectReader for PathReader {
    async fn check_current(&self, _object: &ObjectRef) -> Result<(), ReadError> {
        Ok(())
    }

    async fn read(&self, object: &ObjectRef, range: ByteRange) -> Result<Vec<u8>, ReadError> {
        let mut file = File::open(&self.path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ReadError::NotFound(object.to_string()),
            _ => unavailable(e),
        })?;
        let size = file.metadata().map_err(unavailable)?.len();
        let (start, len) = match range {
            ByteRange::Head(n) => (0, n.min(size)),
            ByteRange::Tail(n) => (size - n.min(size), n.min(size)),
        };
        file.seek(SeekFrom::Start(start)).map_err(unavailable)?;
        let mut bytes = Vec::new();
        file.take(len)
            .read_to_end(&mut bytes)
            .map_err(unavailable)?;
        Ok(bytes)
    }
}

/// What is under some paths: the files to read, and the entries that cannot be read as files,
/// each with why (a link to nothing, a link to a folder, a special file).
#[derive(Debug, Default)]
pub struct Scan {
    pub files: Vec<PathBuf>,
    pub unreadable: Vec<(PathBuf, String)>,
}

/// Every regular file under `paths` (files as given, directories recursively, in name order),
/// skipping hidden entries such as bakdrop's own `.bakdrop` folder, and every entry that is not
/// one, with the reason.
///
/// # Errors
/// When a path given cannot be read at all.
pub fn scan(paths: &[PathBuf]) -> anyhow::Result<Scan> {
    let mut found = Scan::default();
    for path in paths {
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if meta.is_dir() {
            walk(path, &mut found)?;
        } else {
            found.files.push(path.clone());
        }
    }
    Ok(found)
}

fn walk(dir: &Path, found: &mut Scan) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let kind = entry
            .file_type()
            .with_context(|| format!("cannot read {}", path.display()))?;
        if kind.is_dir() {
            walk(&path, found)?;
        } else if kind.is_file() {
            found.files.push(path);
        } else if kind.is_symlink() {
            // Links to files count as the files; directory links are not followed (a link
            // cannot make the walk loop).
            let points_to = std::fs::read_link(&path)
                .map(|t| t.display().to_string())
                .unwrap_or_else(|_| "?".into());
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => found.files.push(path),
                Ok(m) if m.is_dir() => found.unreadable.push((
                    path,
                    format!("a link to the folder {points_to}, which is not followed"),
                )),
                Ok(_) => found
                    .unreadable
                    .push((path, format!("a link to {points_to}, which is not a regular file"))),
                Err(e) => found.unreadable.push((
                    path,
                    format!("a link to {points_to}, which cannot be read ({e}): copy the backups themselves, not links to them (cp -rL)"),
                )),
            }
        } else {
            found
                .unreadable
                .push((path, "not a regular file (a device, pipe or socket)".into()));
        }
    }
    Ok(())
}

/// Entries of a folder that cannot be read as backups: (key, why).
pub type Unreadable = Vec<(String, String)>;

/// A local folder standing in for the S3 bucket: `DIR/<TargetDatabase>/<file>` is the object
/// `<TargetDatabase>/<file>` of bucket [`LocalBucket::bucket`]. Reads ranges only, like the S3
/// adapter, and refuses a file that changed since its event ([`ReadError::Changed`]).
#[derive(Debug, Clone)]
pub struct LocalBucket {
    root: PathBuf,
    bucket: String,
}

impl LocalBucket {
    /// A bucket over `root` (made absolute).
    ///
    /// # Errors
    /// When `root` is not a readable directory.
    pub fn open(root: &Path) -> anyhow::Result<LocalBucket> {
        let root = std::fs::canonicalize(root)
            .with_context(|| format!("cannot open the folder {}", root.display()))?;
        if !root.is_dir() {
            anyhow::bail!("{} is not a folder", root.display());
        }
        let bucket = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "local".to_owned());
        Ok(LocalBucket { root, bucket })
    }

    /// The folder, absolute.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The object for one file under the folder: key = relative path with `/`, ETag = size and
    /// modification time, so that a rewritten file is a new object (a new event).
    ///
    /// # Errors
    /// When the file cannot be read or is outside the folder.
    pub fn object(&self, path: &Path) -> anyhow::Result<ObjectRef> {
        let relative = path
            .strip_prefix(&self.root)
            .with_context(|| format!("{} is not inside {}", path.display(), self.root.display()))?;
        let key = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot stat {}", path.display()))?;
        Ok(ObjectRef {
            bucket: self.bucket.clone(),
            key,
            version_id: None,
            etag: Some(etag(&meta)),
            size: meta.len(),
        })
    }

    /// Every object in the folder, and every entry that cannot be read as one (key, reason).
    ///
    /// # Errors
    /// When the folder cannot be listed.
    pub fn contents(&self) -> anyhow::Result<(Vec<ObjectRef>, Unreadable)> {
        let scanned = scan(std::slice::from_ref(&self.root))?;
        let objects = scanned
            .files
            .iter()
            .map(|p| self.object(p))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let unreadable = scanned
            .unreadable
            .into_iter()
            .map(|(p, why)| {
                let key = p
                    .strip_prefix(&self.root)
                    .unwrap_or(&p)
                    .display()
                    .to_string();
                (key, why)
            })
            .collect();
        Ok((objects, unreadable))
    }

    fn path_of(&self, object: &ObjectRef) -> PathBuf {
        let mut path = self.root.clone();
        for part in object.key.split('/') {
            path.push(part);
        }
        path
    }
}

fn etag(meta: &std::fs::Metadata) -> String {
    let modified = meta
        .modified()
        .ok()
        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{:x}-{modified:x}", meta.len())
}

fn unavailable(e: std::io::Error) -> ReadError {
    ReadError::Unavailable(Box::new(e))
}

impl ObjectReader for LocalBucket {
    /// The file must still have the size and modification stamp (the local ETag) validated.
    async fn check_current(&self, object: &ObjectRef) -> Result<(), ReadError> {
        let meta = match std::fs::metadata(self.path_of(object)) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ReadError::NotFound(object.to_string()))
            }
            Err(e) => return Err(unavailable(e)),
        };
        if object.etag.as_deref().is_some_and(|e| e != etag(&meta)) || meta.len() != object.size {
            return Err(ReadError::Changed(object.to_string()));
        }
        Ok(())
    }

    async fn read(&self, object: &ObjectRef, range: ByteRange) -> Result<Vec<u8>, ReadError> {
        read_range(&self.path_of(object), object, range)
    }
}

/// Reads `range` of the file at `path`, which must still be the version `object` names.
fn read_range(path: &Path, object: &ObjectRef, range: ByteRange) -> Result<Vec<u8>, ReadError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ReadError::NotFound(object.to_string()))
        }
        Err(e) => return Err(unavailable(e)),
    };
    let meta = file.metadata().map_err(unavailable)?;
    if object.etag.as_deref().is_some_and(|e| e != etag(&meta)) || meta.len() != object.size {
        return Err(ReadError::Changed(object.to_string()));
    }
    let size = meta.len();
    let (start, len) = match range {
        ByteRange::Head(n) => (0, n.min(size)),
        ByteRange::Tail(n) => (size - n.min(size), n.min(size)),
    };
    file.seek(SeekFrom::Start(start)).map_err(unavailable)?;
    let mut bytes = Vec::new();
    file.take(len)
        .read_to_end(&mut bytes)
        .map_err(unavailable)?;
    Ok(bytes)
}

/// Local files as objects under keys of the caller's choosing (`bakdrop plan`: a folder's files
/// under their keys from the folder, loose files under their database's name), read like
/// [`LocalBucket`] reads its folder.
#[derive(Debug, Default)]
pub struct PathObjects {
    paths: std::collections::BTreeMap<String, PathBuf>,
}

impl PathObjects {
    /// The object for the file at `path` under `key` in `bucket`; each added file is its own
    /// object, even under a key given twice.
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn add(&mut self, bucket: &str, key: &str, path: &Path) -> anyhow::Result<ObjectRef> {
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot stat {}", path.display()))?;
        let object = ObjectRef {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            version_id: Some(format!("{}", self.paths.len() + 1)),
            etag: Some(etag(&meta)),
            size: meta.len(),
        };
        self.paths.insert(object.file_id(), path.to_path_buf());
        Ok(object)
    }

    /// The file behind an object.
    pub fn path(&self, file_id: &str) -> Option<&Path> {
        self.paths.get(file_id).map(PathBuf::as_path)
    }

    fn path_of(&self, object: &ObjectRef) -> Result<&Path, ReadError> {
        self.path(&object.file_id())
            .ok_or_else(|| ReadError::NotFound(object.to_string()))
    }
}

impl ObjectReader for PathObjects {
    async fn check_current(&self, object: &ObjectRef) -> Result<(), ReadError> {
        read_range(self.path_of(object)?, object, ByteRange::Head(0)).map(|_| ())
    }

    async fn read(&self, object: &ObjectRef, range: ByteRange) -> Result<Vec<u8>, ReadError> {
        read_range(self.path_of(object)?, object, range)
    }
}
