//! `lstat` of worker-relative paths through a handle on the worker root (`fstatat`), so
//! the kernel resolves only the few components below the root rather than the whole
//! absolute path each time: an inventory stats every folder and managed file, and a
//! worker directory holds thousands. Falls back to a plain `lstat` of the joined path
//! where no handle can be had (or off Linux). Never follows a link at the path itself.

use super::disk::{Kind, kind_of};
use super::stat_cache::Stamp;
use std::fs::File;
use std::io::ErrorKind;
use std::path::Path;

/// What `lstat` says of a path, as far as ringops looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Stat {
    /// What stands there.
    pub kind: Kind,
    /// Its stamp for the stat cache.
    pub stamp: Option<Stamp>,
}

impl Stat {
    /// The stat of metadata read without following a link.
    pub fn of(meta: &std::fs::Metadata) -> Stat {
        Stat {
            kind: kind_of(meta),
            stamp: Stamp::of(meta),
        }
    }
}

/// A handle on the worker root to stat below it; `None` when the root cannot be opened
/// (missing, say), and then paths are stat'ed whole.
pub(super) fn open_root(root: &Path) -> Option<File> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(root)
            .ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = root;
        None
    }
}

/// The stat of `rel` (not empty, worker-relative) below `root`, through `handle` when
/// there is one; `None` when nothing stands there or a folder on the way is not one.
pub(super) fn lstat_below(
    handle: Option<&File>,
    root: &Path,
    rel: &str,
) -> std::io::Result<Option<Stat>> {
    let result = match handle {
        #[cfg(target_os = "linux")]
        Some(dir) => fstatat(dir, rel),
        _ => std::fs::symlink_metadata(root.join(rel)).map(|m| Stat::of(&m)),
    };
    match result {
        Ok(stat) => Ok(Some(stat)),
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `fstatat(dir, rel, AT_SYMLINK_NOFOLLOW)`.
#[cfg(target_os = "linux")]
fn fstatat(dir: &File, rel: &str) -> std::io::Result<Stat> {
    use std::os::fd::AsRawFd;
    let name = std::ffi::CString::new(rel).map_err(|_| ErrorKind::InvalidInput)?;
    let mut buf = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `name` is a NUL-terminated string and `buf` a writable `stat` that lives
    // across the call; `dir` is an open descriptor. The kernel fills `buf` on success.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fstatat returned 0, so it initialized `buf`.
    let st = unsafe { buf.assume_init() };
    Ok(from_stat(&st))
}

/// The stat of a `struct stat`, read the way `std::fs::Metadata` reads it.
#[cfg(target_os = "linux")]
fn from_stat(st: &libc::stat) -> Stat {
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFLNK => Kind::Symlink,
        libc::S_IFDIR => Kind::Dir,
        libc::S_IFREG => Kind::File {
            mode: st.st_mode & 0o7777,
        },
        _ => Kind::Other,
    };
    let stamp = Stamp::new(
        st.st_dev,
        st.st_ino,
        u64::try_from(st.st_size).unwrap_or(0),
        (st.st_mtime, st.st_mtime_nsec),
        (st.st_ctime, st.st_ctime_nsec),
    );
    Stat {
        kind,
        stamp: Some(stamp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_through_the_root_handle_is_the_stat_of_the_whole_path() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("wf/job")).unwrap();
        std::fs::write(root.join("wf/job/a.yaml"), "a\n").unwrap();
        std::os::unix::fs::symlink("a.yaml", root.join("wf/job/link")).unwrap();
        std::os::unix::fs::symlink("job", root.join("wf/jump")).unwrap();
        let handle = open_root(root);
        assert_eq!(handle.is_some(), cfg!(target_os = "linux"));
        for rel in ["wf", "wf/job", "wf/job/a.yaml", "wf/job/link", "wf/jump"] {
            let whole = std::fs::symlink_metadata(root.join(rel)).unwrap();
            let through = lstat_below(handle.as_ref(), root, rel).unwrap();
            assert_eq!(through, Some(Stat::of(&whole)), "{rel}");
        }
        let missing = lstat_below(handle.as_ref(), root, "wf/job/a.yaml/x").unwrap();
        assert_eq!(missing, None);
        assert_eq!(lstat_below(handle.as_ref(), root, "nope").unwrap(), None);
    }
}
