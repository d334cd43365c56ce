//! The file calls of the private directory (mkdir, mkfile, symlink, link, rename, chmod, stat, unlink) and
//! setcred, with the VFS's order of checks: the walk, then the name, then permission on the directory.

use super::namespace::{fs_path, Cred, Node, Walk, WalkErr, MAY_EXEC, MAY_READ, MAY_WRITE};
use super::{Model, Prediction};
use crate::script::{Errno, FileKind, Value};

/// A walk, or the prediction its failure gives.
type Walked = Result<Walk, Prediction>;

impl Model {
    /// The thread's effective ids, for permission checks.
    pub(super) fn cred(&self) -> Cred {
        Cred {
            uid: self.euid,
            gid: self.egid,
        }
    }

    fn walk(&self, p: &[u8], follow: bool, rule: &'static str) -> Walked {
        let path = fs_path(p);
        match self.fs.walk(path, follow, self.cred()) {
            Ok(w) => Ok(w),
            Err(WalkErr::Errno(e)) => Err(Prediction::err(rule, e)),
            Err(WalkErr::Outside) => {
                Err(Prediction::unmodelled("path_leaves_the_private_directory"))
            }
        }
    }

    /// `filename_create`: the last component must be a new name (`.` and `..` exist), and the directory must be
    /// writable (rule `create_needs_write_on_directory`, checked after the name).
    fn creating(&self, p: &[u8], rule: &'static str) -> Walked {
        let w = self.walk(p, false, rule)?;
        self.may_create(&w)?;
        Ok(w)
    }

    /// The checks of `creating` after the walk.
    fn may_create(&self, w: &Walk) -> Result<(), Prediction> {
        if w.is_dots() || w.found.is_some() {
            return Err(Prediction::err(
                "create_existing_name_is_eexist",
                Errno::EEXIST,
            ));
        }
        if !self.fs.permits(w.dir, self.cred(), MAY_WRITE | MAY_EXEC) {
            return Err(Prediction::err(
                "create_needs_write_on_directory",
                Errno::EACCES,
            ));
        }
        Ok(())
    }

    pub(super) fn files(&mut self, call: &crate::script::Call) -> Prediction {
        use crate::script::Call;
        let cred = self.cred();
        match call {
            Call::Mkdir(p) => match self.creating(p, "mkdir_path_lookup") {
                Err(e) => e,
                Ok(w) => {
                    // rule `mkdir_mode_is_0777_less_umask`
                    self.fs
                        .create(w.dir, w.name, Node::Dir(Default::default()), 0o755, cred);
                    Prediction::ok("mkdir_mode_is_0777_less_umask")
                }
            },
            Call::Mkfile(p) => {
                if !self.fds_free(1) {
                    return Self::emfile();
                }
                let w = match self.walk(p, false, "mkfile_path_lookup") {
                    Ok(w) => w,
                    Err(e) => return e,
                };
                // rule `mkfile_trailing_slash_is_eisdir`: O_CREAT on a name ending in `/` is EISDIR, whether the
                // name is new, a directory or a file, and before write permission on the directory is asked;
                // `.` and `..` (with or without a `/` after) exist, so `may_create` says EEXIST.
                if w.slash && !w.is_dots() {
                    return Prediction::err("mkfile_trailing_slash_is_eisdir", Errno::EISDIR);
                }
                if let Err(e) = self.may_create(&w) {
                    return e;
                }
                self.fs.create(w.dir, w.name, Node::File, 0o644, cred);
                Prediction::ok("mkfile_mode_is_0666_less_umask")
            }
            Call::Symlink(t, p) => {
                if t.is_empty() {
                    return Prediction::err("symlink_empty_target_is_enoent", Errno::ENOENT);
                }
                if fs_path(p).last() == Some(&b'/') {
                    return Prediction::unmodelled("create_with_trailing_slash");
                }
                match self.creating(p, "symlink_path_lookup") {
                    Err(e) => e,
                    Ok(w) => {
                        let target = fs_path(t).to_vec();
                        self.fs
                            .create(w.dir, w.name, Node::Symlink(target), 0o777, cred);
                        Prediction::ok("symlink_creates_link")
                    }
                }
            }
            Call::Link(a, b) => self.link(a, b),
            Call::Rename(a, b) => self.rename(a, b),
            Call::Chmod(p, m) => match self.walk(p, true, "chmod_path_lookup") {
                Err(e) => e,
                Ok(Walk { found: None, .. }) => {
                    Prediction::err("chmod_missing_is_enoent", Errno::ENOENT)
                }
                Ok(Walk {
                    found: Some(i),
                    slash,
                    ..
                }) => {
                    if slash && !matches!(self.fs.inode(i).node, Node::Dir(_)) {
                        return Prediction::err("path_through_socket_is_enotdir", Errno::ENOTDIR);
                    }
                    // rule `chmod_needs_owner`
                    let n = self.fs.inode(i);
                    if !cred.is_root() && n.uid != cred.uid {
                        return Prediction::err("chmod_needs_owner", Errno::EPERM);
                    }
                    // rule `chmod_drops_setgid_outside_group`: an owner who is not root and not in the
                    // file's group (setcred leaves no supplementary groups) asks for S_ISGID in vain: the
                    // call succeeds, the bit is cleared (files and directories alike).
                    let drops_setgid = !cred.is_root() && n.gid != cred.gid && m & 0o2000 != 0;
                    let (mode, rule) = if drops_setgid {
                        (m & 0o7777 & !0o2000, "chmod_drops_setgid_outside_group")
                    } else {
                        (m & 0o7777, "chmod_sets_mode")
                    };
                    self.fs.inode_mut(i).mode = mode;
                    Prediction::ok(rule)
                }
            },
            Call::Stat(p) => match self.walk(p, false, "stat_path_lookup") {
                Err(e) => e,
                Ok(Walk { found: None, .. }) => {
                    Prediction::err("stat_missing_is_enoent", Errno::ENOENT)
                }
                Ok(Walk {
                    found: Some(i),
                    slash,
                    ..
                }) => {
                    let n = self.fs.inode(i);
                    let kind = match n.node {
                        Node::Dir(_) => FileKind::Dir,
                        Node::File => FileKind::File,
                        Node::Socket(_) => FileKind::Socket,
                        Node::Symlink(_) => FileKind::Symlink,
                    };
                    if slash && kind != FileKind::Dir {
                        return Prediction::err("path_through_socket_is_enotdir", Errno::ENOTDIR);
                    }
                    // rule `stat_reports_type_and_mode`
                    Prediction::one("stat_reports_type_and_mode", Value::Stat(kind, n.mode))
                }
            },
            Call::Setcred(u, g) => {
                // rule `setcred_changes_effective_ids`: real and saved ids stay, so it can always go back.
                if self.params.uid != 0 {
                    return Prediction::unmodelled("setcred_needs_root");
                }
                self.euid = *u;
                self.egid = *g;
                Prediction::ok("setcred_changes_effective_ids")
            }
            Call::Unlink(p) => self.unlink(p),
            _ => Prediction::unmodelled("not_modelled_yet"),
        }
    }

    /// `may_delete`: write and search permission on the directory, and the sticky bit's owner rule.
    fn may_delete(&self, w: &Walk, victim: usize) -> Result<(), Prediction> {
        let cred = self.cred();
        if !self.fs.permits(w.dir, cred, MAY_WRITE | MAY_EXEC) {
            return Err(Prediction::err(
                "delete_needs_write_on_directory",
                Errno::EACCES,
            ));
        }
        let d = self.fs.inode(w.dir);
        if d.mode & 0o1000 != 0
            && !cred.is_root()
            && d.uid != cred.uid
            && self.fs.inode(victim).uid != cred.uid
        {
            return Err(Prediction::err(
                "sticky_directory_keeps_others_names",
                Errno::EPERM,
            ));
        }
        Ok(())
    }

    pub(super) fn unlink(&mut self, p: &[u8]) -> Prediction {
        let path = fs_path(p);
        if path.is_empty() {
            return Prediction::err("unlink_empty_path_is_enoent", Errno::ENOENT);
        }
        let w = match self.walk(p, false, "unlink_path_lookup") {
            Ok(w) => w,
            Err(e) => return e,
        };
        if w.is_dots() {
            return Prediction::err("unlink_dir_is_eisdir", Errno::EISDIR);
        }
        let Some(f) = w.found else {
            return Prediction::err("unlink_missing_is_enoent", Errno::ENOENT);
        };
        let is_dir = matches!(self.fs.inode(f).node, Node::Dir(_));
        if w.slash {
            return if is_dir {
                Prediction::err("unlink_dir_is_eisdir", Errno::EISDIR)
            } else {
                Prediction::err("unlink_path_lookup", Errno::ENOTDIR)
            };
        }
        if let Err(e) = self.may_delete(&w, f) {
            return e;
        }
        if is_dir {
            return Prediction::err("unlink_dir_is_eisdir", Errno::EISDIR);
        }
        // rule `unlink_keeps_socket`: the socket keeps its address and its listeners keep accepting.
        self.fs.remove(w.dir, &w.name);
        Prediction::ok("unlink_removes_file_only")
    }

    fn link(&mut self, a: &[u8], b: &[u8]) -> Prediction {
        let cred = self.cred();
        let old = match self.walk(a, false, "link_path_lookup") {
            Ok(w) => w,
            Err(e) => return e,
        };
        let Some(f) = old.found else {
            return Prediction::err("link_missing_is_enoent", Errno::ENOENT);
        };
        let new = match self.walk(b, false, "link_path_lookup") {
            Ok(w) => w,
            Err(e) => return e,
        };
        if new.is_dots() || new.found.is_some() {
            return Prediction::err("create_existing_name_is_eexist", Errno::EEXIST);
        }
        // rule `protected_hardlinks_keep_others_files`: with fs.protected_hardlinks on (a host parameter), a user
        // other than root may link a file they do not own only if it is a regular file, neither setuid nor
        // setgid with group execute, that they may read and write; a socket file never (EPERM).
        if self.params.protected_hardlinks && !cred.is_root() && self.fs.inode(f).uid != cred.uid {
            let n = self.fs.inode(f);
            let safe = matches!(n.node, Node::File)
                && n.mode & 0o4000 == 0
                && n.mode & 0o2010 != 0o2010
                && self.fs.permits(f, cred, MAY_READ | MAY_WRITE);
            if !safe {
                return Prediction::err("protected_hardlinks_keep_others_files", Errno::EPERM);
            }
        }
        if !self.fs.permits(new.dir, cred, MAY_WRITE | MAY_EXEC) {
            return Prediction::err("create_needs_write_on_directory", Errno::EACCES);
        }
        if matches!(self.fs.inode(f).node, Node::Dir(_)) {
            return Prediction::err("link_to_directory_is_eperm", Errno::EPERM);
        }
        // rule `link_names_the_same_inode`: a hard link to a socket file reaches the same socket.
        self.fs.link(new.dir, new.name, f);
        Prediction::ok("link_names_the_same_inode")
    }

    fn rename(&mut self, a: &[u8], b: &[u8]) -> Prediction {
        let cred = self.cred();
        let old = match self.walk(a, false, "rename_path_lookup") {
            Ok(w) => w,
            Err(e) => return e,
        };
        let new = match self.walk(b, false, "rename_path_lookup") {
            Ok(w) => w,
            Err(e) => return e,
        };
        if old.is_dots() || new.is_dots() {
            return Prediction::err("rename_dots_is_ebusy", Errno::EBUSY);
        }
        let Some(f) = old.found else {
            return Prediction::err("rename_missing_is_enoent", Errno::ENOENT);
        };
        let old_dir = matches!(self.fs.inode(f).node, Node::Dir(_));
        if !old_dir && (old.slash || new.slash) {
            return Prediction::err("rename_path_lookup", Errno::ENOTDIR);
        }
        // rule `rename_into_itself_is_einval`
        if old_dir && self.fs.is_within(new.dir, f) {
            return Prediction::err("rename_into_itself_is_einval", Errno::EINVAL);
        }
        if let Some(t) = new.found {
            if matches!(self.fs.inode(t).node, Node::Dir(_)) && self.fs.is_within(old.dir, t) {
                return Prediction::err("rename_over_ancestor_is_enotempty", Errno::ENOTEMPTY);
            }
            if t == f {
                return Prediction::ok("rename_onto_itself_does_nothing");
            }
        }
        if let Err(e) = self.may_delete(&old, f) {
            return e;
        }
        match new.found {
            None => {
                if !self.fs.permits(new.dir, cred, MAY_WRITE | MAY_EXEC) {
                    return Prediction::err("create_needs_write_on_directory", Errno::EACCES);
                }
            }
            Some(t) => {
                if let Err(e) = self.may_delete(&new, t) {
                    return e;
                }
                let new_dir = matches!(self.fs.inode(t).node, Node::Dir(_));
                if old_dir && !new_dir {
                    return Prediction::err("rename_dir_over_non_dir_is_enotdir", Errno::ENOTDIR);
                }
                if !old_dir && new_dir {
                    return Prediction::err("rename_non_dir_over_dir_is_eisdir", Errno::EISDIR);
                }
            }
        }
        if old_dir && old.dir != new.dir && !self.fs.permits(f, cred, MAY_WRITE) {
            return Prediction::err("rename_dir_needs_write_on_itself", Errno::EACCES);
        }
        if let Some(t) = new.found {
            if !self.fs.is_empty_dir(t) && matches!(self.fs.inode(t).node, Node::Dir(_)) {
                return Prediction::err("rename_over_full_dir_is_enotempty", Errno::ENOTEMPTY);
            }
            self.fs.remove(new.dir, &new.name);
        }
        self.fs.remove(old.dir, &old.name);
        self.fs.link(new.dir, new.name.clone(), f);
        if old_dir {
            self.fs.inode_mut(f).parent = Some(new.dir);
        }
        Prediction::ok("rename_moves_the_name")
    }
}
