//! The simulator's end of a pseudo-terminal. The driver opens the slave side
//! by path with the same serial code it uses for a USB modem, so everything
//! it does (termios, reads, hang-ups) goes through a real tty.

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::pty::{PtyMaster, grantpt, posix_openpt, ptsname_r, unlockpt};
use tokio::io::unix::AsyncFd;

pub struct Pty {
    /// Re-registered after a hang-up: tokio keeps "read closed" readiness
    /// for good, which would make every later read spin.
    master: Option<AsyncFd<PtyMaster>>,
    slave: PathBuf,
}

/// What a read of the master side saw.
pub enum PtyRead {
    Data(usize),
    /// No process has the slave open (never opened, or closed: Linux answers
    /// EIO then). The simulator waits for a host as a modem waits for one.
    NoHost,
}

impl Pty {
    pub fn open() -> io::Result<Self> {
        let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY)?;
        grantpt(&master)?;
        unlockpt(&master)?;
        let slave = PathBuf::from(ptsname_r(&master)?);
        let flags = OFlag::from_bits_truncate(fcntl(&master, FcntlArg::F_GETFL)?);
        fcntl(&master, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        // SAFETY: the fd is owned by `master`, which the AsyncFd owns and
        // deregisters before closing; nothing else holds the fd.
        let master = unsafe { AsyncFd::register(master) }.map_err(|e| e.into_parts().1)?;
        Ok(Self {
            master: Some(master),
            slave,
        })
    }

    /// `/dev/pts/N`: what a host opens.
    pub fn slave_path(&self) -> &Path {
        &self.slave
    }

    fn fd(&self) -> &AsyncFd<PtyMaster> {
        self.master
            .as_ref()
            .expect("registered outside of reregister")
    }

    /// Fresh readiness after a hang-up (see `master`).
    pub fn reregister(&mut self) -> io::Result<()> {
        if let Some(fd) = self.master.take() {
            let master = fd.into_inner();
            // SAFETY: as in `open`: the AsyncFd is the fd's only owner.
            let fd = unsafe { AsyncFd::register(master) }.map_err(|e| e.into_parts().1)?;
            self.master = Some(fd);
        }
        Ok(())
    }

    pub async fn read(&self, buf: &mut [u8]) -> io::Result<PtyRead> {
        loop {
            if self.hung_up()? {
                return Ok(PtyRead::NoHost);
            }
            let mut guard = self.fd().readable().await?;
            let closed = guard.ready().is_read_closed();
            match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), buf).map_err(io::Error::from)) {
                Ok(Ok(0)) => return Ok(PtyRead::NoHost),
                Ok(Ok(n)) => return Ok(PtyRead::Data(n)),
                Ok(Err(e)) if e.raw_os_error() == Some(nix::libc::EIO) => {
                    // The fd stays readable (POLLHUP) while nobody has the
                    // slave open; clear readiness so the caller can back off.
                    guard.clear_ready();
                    return Ok(PtyRead::NoHost);
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) if closed => return Ok(PtyRead::NoHost),
                Err(_would_block) => continue,
            }
        }
    }

    /// POLLHUP without data: no process has the slave open. Checked with
    /// poll(2) because the hang-up readiness tokio caches is sticky.
    fn hung_up(&self) -> io::Result<bool> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let mut fds = [PollFd::new(self.fd().get_ref().as_fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::ZERO)?;
        let revents = fds[0].revents().unwrap_or(PollFlags::empty());
        Ok(revents.contains(PollFlags::POLLHUP) && !revents.contains(PollFlags::POLLIN))
    }

    pub async fn write_all(&self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let mut guard = self.fd().writable().await?;
            match guard
                .try_io(|fd| nix::unistd::write(fd.get_ref(), bytes).map_err(io::Error::from))
            {
                Ok(Ok(n)) => bytes = &bytes[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }
}

/// Point `link` at `target` atomically, so a host polling the path never sees
/// a half-made link (like udev's /dev/serial/by-id links).
pub fn replace_symlink(target: &Path, link: &Path) -> io::Result<()> {
    let tmp = link.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, link)
}
