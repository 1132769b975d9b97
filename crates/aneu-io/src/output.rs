//! Writing outputs without touching what aneu did not write.
//!
//! * [`check_disjoint`]: an output folder may not lie inside the input,
//!   nor the input inside the output.
//! * [`claim_output_dir`]: a dataset run writes only into a new or empty
//!   folder, or one that an aneu run of the same kind marked as its own.
//! * [`write_atomic`]: every file is written under a temporary name and
//!   renamed, only onto a regular file or a new path (never through a
//!   symbolic link, onto a device or a FIFO), and the temporary file is
//!   removed on every error path.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The name of the marker file that [`claim_output_dir`] writes.
pub const OUTPUT_MARKER: &str = ".aneu-output";

fn unsafe_output(path: &Path, reason: impl Into<String>) -> Error {
    Error::UnsafeOutput {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// `path` made absolute with every link resolved, also when its last
/// components do not exist yet: the longest existing ancestor is
/// canonicalised and the rest appended.
fn resolved(path: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(path).map_err(|e| Error::io(path, e))?;
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = existing.canonicalize() {
            return Ok(rest.iter().rev().fold(c, |p: PathBuf, n| p.join(n)));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return Ok(abs),
        }
    }
}

/// Refuses an output folder inside the input folder, or the reverse
/// (links resolved), so that a run never writes into the user's data nor
/// reads its own outputs as input.
///
/// ```
/// let d = tempfile::tempdir().unwrap();
/// let data = d.path().join("data");
/// std::fs::create_dir(&data).unwrap();
/// assert!(aneu_io::check_disjoint(&data, &data.join("series/out")).is_err());
/// assert!(aneu_io::check_disjoint(&data, d.path()).is_err());
/// assert!(aneu_io::check_disjoint(&data, &d.path().join("out")).is_ok());
/// ```
///
/// # Errors
/// [`Error::UnsafeOutput`] when they overlap; [`Error::Io`] when a path
/// cannot be resolved.
pub fn check_disjoint(input: &Path, output: &Path) -> Result<()> {
    let (i, o) = (resolved(input)?, resolved(output)?);
    if o.starts_with(&i) {
        return Err(unsafe_output(
            output,
            format!("it lies inside the input {}", input.display()),
        ));
    }
    if i.starts_with(&o) {
        return Err(unsafe_output(
            output,
            format!("the input {} lies inside it", input.display()),
        ));
    }
    Ok(())
}

/// Makes `dir` an output folder of a run of `kind` (`"preprocess"`,
/// `"predict"`): creates it when it does not exist, and marks it with
/// [`OUTPUT_MARKER`]. An existing folder is accepted when it is empty,
/// already marked for `kind`, or when `written_by_aneu` recognises it as
/// the output of an earlier aneu run (made before the marker existed).
/// Anything else is refused, so that a run never overwrites files aneu
/// did not write.
///
/// # Errors
/// [`Error::UnsafeOutput`] for a folder that holds other files, a marker
/// of another kind, or a path that is not a folder; [`Error::Io`].
pub fn claim_output_dir(dir: &Path, kind: &str, written_by_aneu: impl Fn(&Path) -> bool) -> Result<()> {
    let marker = dir.join(OUTPUT_MARKER);
    match std::fs::metadata(dir) {
        Err(_) => std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?,
        Ok(md) if !md.is_dir() => return Err(unsafe_output(dir, "it is not a folder")),
        Ok(_) => {
            if let Ok(k) = std::fs::read_to_string(&marker) {
                return if k.trim() == kind {
                    Ok(())
                } else {
                    Err(unsafe_output(
                        dir,
                        format!("it holds the output of an aneu {:?} run, not {kind:?}", k.trim()),
                    ))
                };
            }
            let empty = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?.next().is_none();
            if !empty && !written_by_aneu(dir) {
                return Err(unsafe_output(
                    dir,
                    "it holds files that aneu did not write; choose a new or empty folder",
                ));
            }
        }
    }
    write_atomic(&marker, format!("{kind}\n").as_bytes())
}

/// Checks that `path` may be replaced: it does not exist, or it is a
/// regular file (not a link, a folder, a device or a FIFO).
///
/// # Errors
/// [`Error::UnsafeOutput`] naming the path and what it is.
pub fn check_writable_target(path: &Path) -> Result<()> {
    let Ok(md) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    let ft = md.file_type();
    let what = if ft.is_file() {
        return Ok(());
    } else if ft.is_symlink() {
        "it is a symbolic link"
    } else if ft.is_dir() {
        "it is a folder"
    } else {
        "it is not a regular file (a device, FIFO or socket)"
    };
    Err(unsafe_output(path, what))
}

/// Writes a file through `write` under a temporary name beside `path`
/// (`.aneu-tmp-<pid>-<n>-<name>`) and renames it onto `path`, so that
/// readers never see a partial file. `path` must be a new path or a
/// regular file ([`check_writable_target`]); the temporary file is removed
/// when `write` or the rename fails.
///
/// # Errors
/// [`Error::UnsafeOutput`], [`Error::Io`], and `write`'s own errors.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| unsafe_output(path, "it has no file name"))?
        .to_string_lossy()
        .into_owned();
    write_atomic_named(path, |unique| format!("{unique}-{name}"), write)
}

/// [`write_atomic_with`] under a temporary name of the caller's choosing:
/// `tmp_name` receives the unique prefix `.aneu-tmp-<pid>-<n>` and returns
/// the file name. For writers that pick the extension themselves: nifti-rs
/// strips a name's last extension and replaces the one before it, so a
/// NIfTI file must be written as `.aneu-tmp-<pid>-<n>.nii[.gz]`.
pub(crate) fn write_atomic_named(
    path: &Path,
    tmp_name: impl FnOnce(&str) -> String,
    write: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    check_writable_target(path)?;
    if path.file_name().is_none() {
        return Err(unsafe_output(path, "it has no file name"));
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_file_name(tmp_name(&format!(".aneu-tmp-{}-{n}", std::process::id())));
    let result = write(&tmp).and_then(|()| std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e)));
    if result.is_err() {
        // Nothing to remove when the write failed before creating it.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// [`write_atomic_with`] for bytes in memory.
///
/// ```
/// let d = tempfile::tempdir().unwrap();
/// let p = d.path().join("a.txt");
/// aneu_io::write_atomic(&p, b"one").unwrap();
/// aneu_io::write_atomic(&p, b"two").unwrap();
/// assert_eq!(std::fs::read(&p).unwrap(), b"two");
/// // a folder is never replaced
/// assert!(aneu_io::write_atomic(d.path(), b"x").is_err());
/// ```
///
/// # Errors
/// As [`write_atomic_with`].
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| std::fs::write(tmp, bytes).map_err(|e| Error::io(tmp, e)))
}
