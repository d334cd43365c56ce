//! The script's private directory as the model sees it: a tree of directories, regular files, socket files
//! and symlinks, each with a mode and an owner, and the path walk with its permission checks (`namei`).
//! Socket files outlive their sockets until unlinked; a hard link reaches the same socket.

use super::socket::SockId;
use crate::script::Errno;
use std::collections::BTreeMap;

/// Index of an inode in the namespace's arena. Inode 0 is the private directory.
pub type Ino = usize;

/// What an inode is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Dir(BTreeMap<Vec<u8>, Ino>),
    File,
    /// A socket file, made by the bind of this socket.
    Socket(SockId),
    Symlink(Vec<u8>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inode {
    pub node: Node,
    /// The 12 permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// A directory's parent (`..`); `None` for the private directory (its parent is outside the model).
    pub parent: Option<Ino>,
}

/// What a path names once resolved (the v1 view, kept for bind / connect / unlink).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A directory (the private directory itself, `"."`, or one the script made).
    Dir,
    /// A socket file, made by the bind of this socket.
    Socket(SockId),
    /// A regular file or a symlink (not followed).
    Other,
    /// Nothing there yet, in an existing directory (bind can create it).
    Missing,
}

/// Why a walk failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkErr {
    Errno(Errno),
    /// The path leaves the private directory (an absolute symlink target, `..` above it): the model does not
    /// know what is there.
    Outside,
}

impl From<Errno> for WalkErr {
    fn from(e: Errno) -> WalkErr {
        WalkErr::Errno(e)
    }
}

/// The end of a walk: the directory holding the last component, its name and what it names (if anything).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Walk {
    pub dir: Ino,
    pub name: Vec<u8>,
    pub found: Option<Ino>,
    /// The path ended with `/`.
    pub slash: bool,
}

impl Walk {
    /// The last component is `.` or `..` (not a name that can be created or removed).
    pub fn is_dots(&self) -> bool {
        self.name == b"." || self.name == b".."
    }
}

/// Who is asking: the thread's effective ids (root passes every permission check).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cred {
    pub uid: u32,
    pub gid: u32,
}

impl Cred {
    pub fn is_root(self) -> bool {
        self.uid == 0
    }
}

pub const MAY_EXEC: u32 = 1;
pub const MAY_WRITE: u32 = 2;
pub const MAY_READ: u32 = 4;

/// Longest path name, NUL included (Linux PATH_MAX).
const PATH_MAX: usize = 4096;
/// Longest path component (NAME_MAX of the filesystems a temp directory lives on: ext4, tmpfs, xfs, btrfs).
const NAME_MAX: usize = 255;
/// Most symlinks one walk follows (MAXSYMLINKS).
const MAXSYMLINKS: usize = 40;

/// The filesystem path a script path names: its bytes up to the first NUL (`unix_mkname_bsd`).
pub fn fs_path(addr: &[u8]) -> &[u8] {
    addr.split(|&b| b == 0).next().unwrap_or(&[])
}

/// The socket files and directories of one script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    inodes: Vec<Inode>,
}

impl Namespace {
    /// A fresh private directory owned by `uid:gid` with mode `mode` (the executor makes it 0700).
    pub fn new(uid: u32, gid: u32, mode: u32) -> Namespace {
        Namespace {
            inodes: vec![Inode {
                node: Node::Dir(BTreeMap::new()),
                mode,
                uid,
                gid,
                parent: None,
            }],
        }
    }

    pub fn inode(&self, i: Ino) -> &Inode {
        &self.inodes[i]
    }

    pub fn inode_mut(&mut self, i: Ino) -> &mut Inode {
        &mut self.inodes[i]
    }

    fn is_dir(&self, i: Ino) -> bool {
        matches!(self.inodes[i].node, Node::Dir(_))
    }

    /// `generic_permission`: owner, group or other bits; root passes (CAP_DAC_OVERRIDE).
    pub fn permits(&self, i: Ino, cred: Cred, mask: u32) -> bool {
        if cred.is_root() {
            return true;
        }
        let n = &self.inodes[i];
        let bits = if n.uid == cred.uid {
            n.mode >> 6
        } else if n.gid == cred.gid {
            n.mode >> 3
        } else {
            n.mode
        } & 7;
        bits & mask == mask
    }

    fn child(&self, dir: Ino, name: &[u8]) -> Result<Option<Ino>, WalkErr> {
        match name {
            b"." => Ok(Some(dir)),
            b".." => self.inodes[dir].parent.map(Some).ok_or(WalkErr::Outside),
            _ => match &self.inodes[dir].node {
                Node::Dir(e) => Ok(e.get(name).copied()),
                _ => Err(Errno::ENOTDIR.into()),
            },
        }
    }

    /// Follows a symlink found in `dir` to what it finally names (it must exist).
    fn follow(&self, dir: Ino, target: &[u8], cred: Cred, depth: usize) -> Result<Ino, WalkErr> {
        if depth >= MAXSYMLINKS {
            return Err(Errno::ELOOP.into());
        }
        if target.is_empty() {
            return Err(Errno::ENOENT.into());
        }
        if target.first() == Some(&b'/') {
            return Err(WalkErr::Outside);
        }
        let w = self.walk_from(dir, target, true, cred, depth + 1)?;
        let f = w.found.ok_or(WalkErr::Errno(Errno::ENOENT))?;
        // A target ending in `/` names a directory.
        if w.slash && !self.is_dir(f) {
            return Err(Errno::ENOTDIR.into());
        }
        Ok(f)
    }

    /// Walks `path` from the private directory. `follow` follows a symlink in the last component (and a
    /// trailing slash always does); every directory passed needs search permission.
    ///
    /// rule `path_missing_dir_is_enoent`, rule `path_through_socket_is_enotdir` (through any non-directory),
    /// rule `path_over_path_max_is_enametoolong` (before the walk), rule
    /// `component_over_name_max_is_enametoolong` (when the walk reaches it), rule `path_needs_search_permission`.
    pub fn walk(&self, path: &[u8], follow: bool, cred: Cred) -> Result<Walk, WalkErr> {
        if path.len() + 1 > PATH_MAX {
            return Err(Errno::ENAMETOOLONG.into());
        }
        self.walk_from(0, path, follow, cred, 0)
    }

    fn walk_from(
        &self,
        start: Ino,
        path: &[u8],
        follow: bool,
        cred: Cred,
        depth: usize,
    ) -> Result<Walk, WalkErr> {
        if path.first() == Some(&b'/') {
            return Err(WalkErr::Outside);
        }
        let slash = path.last() == Some(&b'/');
        // The components, every one but the last a directory to walk through (no allocation: a path is
        // looked up on most steps).
        let mut comps = path.split(|&b| b == b'/').filter(|c| !c.is_empty());
        let Some(mut last) = comps.next() else {
            return Err(Errno::ENOENT.into());
        };
        let mut cur = start;
        for next_comp in comps {
            let d = std::mem::replace(&mut last, next_comp);
            if !self.permits(cur, cred, MAY_EXEC) {
                return Err(Errno::EACCES.into());
            }
            if d.len() > NAME_MAX {
                return Err(Errno::ENAMETOOLONG.into());
            }
            let Some(mut next) = self.child(cur, d)? else {
                return Err(Errno::ENOENT.into());
            };
            if let Node::Symlink(t) = &self.inodes[next].node {
                next = self.follow(cur, t, cred, depth)?;
            }
            if !self.is_dir(next) {
                return Err(Errno::ENOTDIR.into());
            }
            cur = next;
        }
        if !self.permits(cur, cred, MAY_EXEC) {
            return Err(Errno::EACCES.into());
        }
        if last.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG.into());
        }
        let mut found = self.child(cur, last)?;
        if let Some(f) = found {
            if let Node::Symlink(t) = &self.inodes[f].node {
                if follow || slash {
                    found = Some(self.follow(cur, t, cred, depth)?);
                }
            }
        }
        Ok(Walk {
            dir: cur,
            name: last.to_vec(),
            found,
            slash,
        })
    }

    /// The v1 view of a path for bind (`create`), connect and unlink: rule
    /// `create_finds_name_before_trailing_slash` — an existing last component is found (EADDRINUSE follows) even
    /// with a trailing slash, where a lookup says ENOTDIR.
    pub fn lookup(&self, path: &[u8], create: bool, cred: Cred) -> Result<(Lookup, Walk), WalkErr> {
        // bind does not follow a symlink in the last component (mknod finds the name taken); connect does.
        let w = self.walk(path, !create, cred)?;
        let Some(f) = w.found else {
            if w.slash {
                return Err(Errno::ENOENT.into());
            }
            return Ok((Lookup::Missing, w));
        };
        let l = match &self.inodes[f].node {
            Node::Dir(_) => Lookup::Dir,
            Node::Socket(s) => Lookup::Socket(*s),
            Node::File | Node::Symlink(_) => Lookup::Other,
        };
        if w.slash && !create && l != Lookup::Dir {
            return Err(Errno::ENOTDIR.into());
        }
        Ok((l, w))
    }

    /// Adds a new inode named `name` in `dir`.
    pub fn create(&mut self, dir: Ino, name: Vec<u8>, node: Node, mode: u32, cred: Cred) -> Ino {
        let parent = matches!(node, Node::Dir(_)).then_some(dir);
        self.inodes.push(Inode {
            node,
            mode,
            uid: cred.uid,
            gid: cred.gid,
            parent,
        });
        let i = self.inodes.len() - 1;
        self.link(dir, name, i);
        i
    }

    /// Adds the name `name` in `dir` for the existing inode `i`.
    pub fn link(&mut self, dir: Ino, name: Vec<u8>, i: Ino) {
        if let Node::Dir(e) = &mut self.inodes[dir].node {
            e.insert(name, i);
        }
    }

    /// Removes the name `name` from `dir`.
    pub fn remove(&mut self, dir: Ino, name: &[u8]) -> Option<Ino> {
        match &mut self.inodes[dir].node {
            Node::Dir(e) => e.remove(name),
            _ => None,
        }
    }

    /// Whether directory `d` holds no names.
    pub fn is_empty_dir(&self, d: Ino) -> bool {
        matches!(&self.inodes[d].node, Node::Dir(e) if e.is_empty())
    }

    /// Whether `a` is `b` or lies below it.
    pub fn is_within(&self, mut a: Ino, b: Ino) -> bool {
        loop {
            if a == b {
                return true;
            }
            match self.inodes[a].parent {
                Some(p) => a = p,
                None => return false,
            }
        }
    }
}
