//! The script's private directory as the model sees it: socket files by name, outliving their sockets until
//! unlinked. Version 1 scripts cannot make directories, so the private directory is the only one there is.

use super::socket::SockId;
use crate::script::Errno;
use std::collections::HashMap;

/// What a path names once resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The private directory itself (`"."`).
    Dir,
    /// A socket file, made by the bind of this socket.
    Socket(SockId),
    /// Nothing there yet, in an existing directory (bind can create it).
    Missing,
}

/// Socket files in the private directory.
#[derive(Clone, Debug, Default)]
pub struct Namespace {
    files: HashMap<Vec<u8>, SockId>,
}

/// Longest path name, NUL included (Linux PATH_MAX).
const PATH_MAX: usize = 4096;
/// Longest path component (NAME_MAX of the filesystems a temp directory lives on: ext4, tmpfs, xfs, btrfs).
const NAME_MAX: usize = 255;

/// The filesystem path a script address names: its bytes up to the first NUL (`unix_mkname_bsd`).
pub fn fs_path(addr: &[u8]) -> &[u8] {
    addr.split(|&b| b == 0).next().unwrap_or(&[])
}

impl Namespace {
    /// Resolves a relative path. rule `path_missing_dir_is_enoent`: a path through a directory that does not
    /// exist is ENOENT; rule `path_through_socket_is_enotdir`: through a socket file, ENOTDIR. `create` is
    /// bind's way (mknod): rule `create_finds_name_before_trailing_slash` — an existing last component is found
    /// (EADDRINUSE follows) even with a trailing slash, where a lookup says ENOTDIR.
    ///
    /// rule `path_over_path_max_is_enametoolong`: a path of PATH_MAX bytes or more (with its NUL) is refused
    /// before the walk; rule `component_over_name_max_is_enametoolong`: a component over NAME_MAX is refused
    /// when the walk reaches it (a missing directory before it wins).
    pub fn lookup(&self, path: &[u8], create: bool) -> Result<(Lookup, Vec<u8>), Errno> {
        if path.len() + 1 > PATH_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let trailing_slash = path.last() == Some(&b'/');
        let comps: Vec<&[u8]> = path
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .collect();
        let Some((last, dirs)) = comps.split_last() else {
            return Err(Errno::ENOENT);
        };
        for d in dirs {
            if d.len() > NAME_MAX {
                return Err(Errno::ENAMETOOLONG);
            }
            if *d != b"." {
                let found = self.files.contains_key(*d);
                return Err(if found { Errno::ENOTDIR } else { Errno::ENOENT });
            }
        }
        if last.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        if *last == b"." {
            return Ok((Lookup::Dir, Vec::new()));
        }
        match self.files.get(*last) {
            Some(_) if trailing_slash && !create => Err(Errno::ENOTDIR),
            Some(&s) => Ok((Lookup::Socket(s), last.to_vec())),
            None if trailing_slash => Err(Errno::ENOENT),
            None => Ok((Lookup::Missing, last.to_vec())),
        }
    }

    pub fn create(&mut self, name: Vec<u8>, sock: SockId) {
        self.files.insert(name, sock);
    }

    pub fn remove(&mut self, name: &[u8]) {
        self.files.remove(name);
    }

    /// Number of socket files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}
