// SPDX-License-Identifier: GPL-2.0-only
//! The registration socket's file: where it may live, how a stale one is
//! told from a live one, its owner and mode, and the open-file limit the
//! connections and pidfds behind it need.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use log::{debug, info, warn};
use morpheus_common::seqpacket;

use super::{MAX_CONNECTIONS, ServerConfig};

/// Descriptors the loader needs at most: a pidfd per worker, a socket and
/// a pidfd per connection, an SCB array per process, and room to spare.
const FDS_NEEDED: u64 = morpheus_common::MAX_WORKERS as u64
    + 2 * MAX_CONNECTIONS
    + morpheus_common::MAX_PROCESSES as u64
    + 256;

/// Connections waiting to be accepted before the kernel refuses more.
const BACKLOG: u32 = 128;

/// Creates, binds and permissions the listening socket.
pub(super) fn bind(cfg: &ServerConfig) -> Result<OwnedFd> {
    let path = &cfg.path;
    if path.as_os_str().len() > seqpacket::MAX_PATH_LEN {
        bail!(
            "socket path {} is too long (at most {} bytes)",
            path.display(),
            seqpacket::MAX_PATH_LEN
        );
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the socket directory {}", dir.display()))?;
        check_socket_dir(dir)?;
    }
    remove_stale(path)?;

    let sock = seqpacket::bind(path).with_context(|| format!("cannot bind {}", path.display()))?;
    let cpath = CString::new(path.as_os_str().as_bytes()).expect("no NUL in a bound path");
    // The directories let no one else replace what we bound (checked
    // above); still, never follow a symlink when setting permissions.
    use std::os::unix::fs::FileTypeExt;
    if !std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        bail!("{} is not the socket just bound", path.display());
    }
    // SAFETY: fchmodat/fchownat on the path we just bound, not following
    // a symlink there (glibc's fchmodat refuses one with AT_SYMLINK_NOFOLLOW).
    unsafe {
        if libc::fchmodat(
            libc::AT_FDCWD,
            cpath.as_ptr(),
            cfg.mode as libc::mode_t,
            libc::AT_SYMLINK_NOFOLLOW,
        ) != 0
        {
            return Err(io::Error::last_os_error()).context("cannot chmod the socket");
        }
        if let Some(gid) = cfg.group
            && libc::fchownat(
                libc::AT_FDCWD,
                cpath.as_ptr(),
                u32::MAX,
                gid,
                libc::AT_SYMLINK_NOFOLLOW,
            ) != 0
        {
            return Err(io::Error::last_os_error()).context("cannot chown the socket");
        }
    }
    seqpacket::listen(sock.as_fd(), BACKLOG).context("cannot listen on the socket")?;
    Ok(sock)
}

/// The socket's directory, and every directory above it, must keep others
/// from replacing the socket (and so from redirecting clients, or the
/// permissions we set, elsewhere): each owned by us or root, and writable
/// by nobody else unless sticky (as /tmp is: others cannot remove or
/// rename what we bind there). A directory above that others could write
/// would let them rename the socket's directory away and put their own in
/// its place. Judged on the resolved path: a symlink on the way counts as
/// where it leads.
fn check_socket_dir(dir: &Path) -> Result<()> {
    let resolved = std::fs::canonicalize(dir)
        .with_context(|| format!("cannot inspect the socket directory {}", dir.display()))?;
    for d in resolved.ancestors() {
        let what = if d == resolved {
            format!("the socket directory {}", dir.display())
        } else {
            format!(
                "{}, above the socket directory {},",
                d.display(),
                dir.display()
            )
        };
        check_one_dir(d, &what)?;
    }
    Ok(())
}

/// One directory of [`check_socket_dir`], called `what` in errors.
fn check_one_dir(d: &Path, what: &str) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(d).with_context(|| format!("cannot inspect {what}"))?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != 0 && meta.uid() != me {
        bail!(
            "{what} belongs to uid {}, who could replace the socket: \
             use a directory owned by root (the default /run/morpheus)",
            meta.uid()
        );
    }
    let sticky = meta.mode() & libc::S_ISVTX != 0;
    if meta.mode() & 0o022 != 0 && !sticky {
        bail!(
            "{what} (mode {:o}) is writable by others, who could replace \
             the socket: remove group/other write permission or use another --socket",
            meta.mode() & 0o7777
        );
    }
    Ok(())
}

/// Removes a socket left behind by a loader that died; refuses to touch a
/// live one or anything that is not a socket.
fn remove_stale(path: &Path) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        bail!(
            "{} exists and is not a socket: remove it or pick another --socket",
            path.display()
        );
    }
    // Only a listener accepts a connection: anything else leaves a socket
    // file that no one serves.
    if seqpacket::connect(path, None).is_ok() {
        bail!(
            "another scx_morpheus is serving {}: stop it first (or pick another --socket)",
            path.display()
        );
    }
    std::fs::remove_file(path)
        .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
    info!(
        "removed a stale socket left by a previous loader: {}",
        path.display()
    );
    Ok(())
}

/// Raises the soft open-file limit to the hard one: every registered worker
/// holds a pidfd, and with the usual soft limit of 1024 one user's
/// registrations could exhaust it and make accept(2) fail for everyone.
pub(super) fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        if lim.rlim_cur < lim.rlim_max {
            let soft = lim.rlim_cur;
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                debug!("open-file limit raised from {soft} to {}", lim.rlim_max);
            }
        }
    }
    if lim.rlim_cur < FDS_NEEDED {
        warn!(
            "the open-file limit is {}, below the {FDS_NEEDED} a full worker table needs: \
             registrations beyond it are refused (raise LimitNOFILE or `ulimit -Hn`)",
            lim.rlim_cur
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    fn dir_with_mode(name: &str, mode: u32) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("morpheus-sockdir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir(&d);
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
        d
    }

    #[test]
    fn a_socket_directory_others_can_write_is_refused_unless_sticky() {
        let private = dir_with_mode("private", 0o755);
        let open = dir_with_mode("open", 0o777);
        let group = dir_with_mode("group", 0o775);
        let sticky = dir_with_mode("sticky", 0o1777);
        assert!(check_socket_dir(&private).is_ok());
        assert!(check_socket_dir(&sticky).is_ok());
        for d in [&open, &group] {
            let e = check_socket_dir(d).unwrap_err().to_string();
            assert!(e.contains("is writable by others"), "{e}");
        }
        for d in [private, open, group, sticky] {
            std::fs::remove_dir(d).unwrap();
        }
    }

    /// A private directory is no safer than the directories above it:
    /// whoever can write one of them can move it away.
    #[test]
    fn a_directory_others_can_write_above_the_socket_directory_is_refused() {
        let open = dir_with_mode("open-above", 0o777);
        let inner = open.join("private");
        std::fs::create_dir(&inner).unwrap();
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = check_socket_dir(&inner).unwrap_err().to_string();
        assert!(
            e.contains(&format!("{}, above the socket directory", open.display()))
                && e.contains("is writable by others"),
            "{e}"
        );
        // Reached through a symlink, it is judged by where it leads.
        let link =
            std::env::temp_dir().join(format!("morpheus-sockdir-link-{}", std::process::id()));
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&inner, &link).unwrap();
        assert!(check_socket_dir(&link).is_err());
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(check_socket_dir(&link).is_ok());
        std::fs::remove_file(link).unwrap();
        std::fs::remove_dir(inner).unwrap();
        std::fs::remove_dir(open).unwrap();
    }

    #[test]
    fn a_socket_directory_of_another_user_is_refused() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: only root can give a directory away (CI runs as root)");
            return;
        }
        let d = dir_with_mode("theirs", 0o755);
        let c = CString::new(d.as_os_str().as_bytes()).unwrap();
        // SAFETY: chown of the directory just created.
        assert_eq!(unsafe { libc::chown(c.as_ptr(), 65534, 65534) }, 0);
        let e = check_socket_dir(&d).unwrap_err().to_string();
        assert!(e.contains("belongs to uid 65534"), "{e}");
        std::fs::remove_dir(d).unwrap();
    }
}
