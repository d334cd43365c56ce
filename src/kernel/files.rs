//! The file calls (run with the private directory as cwd) and the cleaning of the private directory.

use crate::script::{Errno, FileKind, Outcome, Value};
use nix::libc;
use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// A script path as the filesystem sees it: the bytes up to the first NUL.
pub fn cpath(p: &[u8]) -> CString {
    let end = p.iter().position(|&b| b == 0).unwrap_or(p.len());
    CString::new(&p[..end]).expect("no NUL before `end`")
}

fn done(r: libc::c_int) -> Outcome {
    if r < 0 {
        Outcome::err(Errno(nix::errno::Errno::last_raw()))
    } else {
        Outcome::OK
    }
}

// SAFETY (all below): the pointers are live NUL-terminated strings or live stat buffers.

pub fn unlink(p: &[u8]) -> Outcome {
    done(unsafe { libc::unlink(cpath(p).as_ptr()) })
}

pub fn mkdir(p: &[u8]) -> Outcome {
    done(unsafe { libc::mkdir(cpath(p).as_ptr(), 0o777) })
}

pub fn mkfile(p: &[u8]) -> Outcome {
    let fd = unsafe {
        libc::open(
            cpath(p).as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
            0o666 as libc::c_uint,
        )
    };
    if fd < 0 {
        return done(fd);
    }
    done(unsafe { libc::close(fd) })
}

pub fn symlink(target: &[u8], p: &[u8]) -> Outcome {
    done(unsafe { libc::symlink(cpath(target).as_ptr(), cpath(p).as_ptr()) })
}

pub fn link(old: &[u8], new: &[u8]) -> Outcome {
    done(unsafe { libc::link(cpath(old).as_ptr(), cpath(new).as_ptr()) })
}

pub fn rename(old: &[u8], new: &[u8]) -> Outcome {
    done(unsafe { libc::rename(cpath(old).as_ptr(), cpath(new).as_ptr()) })
}

pub fn chmod(p: &[u8], mode: u32) -> Outcome {
    done(unsafe { libc::chmod(cpath(p).as_ptr(), mode as libc::mode_t) })
}

pub fn stat(p: &[u8]) -> Outcome {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::lstat(cpath(p).as_ptr(), &mut st) };
    if r < 0 {
        return done(r);
    }
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFSOCK => FileKind::Socket,
        libc::S_IFREG => FileKind::File,
        libc::S_IFDIR => FileKind::Dir,
        libc::S_IFLNK => FileKind::Symlink,
        libc::S_IFIFO => FileKind::Fifo,
        libc::S_IFCHR => FileKind::Char,
        _ => FileKind::Block,
    };
    Outcome::of(Value::Stat(kind, st.st_mode & 0o7777))
}

/// Empties `dir` (and gives it mode 0700 again): every entry is removed without following symlinks, and
/// directories are made accessible (a script may have chmodded them to 000) before they are emptied.
pub fn clean(dir: &Path) -> std::io::Result<()> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    empty(dir)
}

fn empty(dir: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        // The entry's own type (d_type, or lstat where the filesystem gives none): a symlink (to a directory,
        // to `/`) is removed as a link, never followed.
        if e.file_type()?.is_dir() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700))?;
            empty(&p)?;
            std::fs::remove_dir(&p)?;
        } else {
            std::fs::remove_file(&p)?;
        }
    }
    Ok(())
}
