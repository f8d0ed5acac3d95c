//! A store that takes no writes, as on a full disk: the process's file size
//! limit (`RLIMIT_FSIZE`) at one byte. It is the whole process's, so a test
//! binary that uses it runs its tests one at a time.

/// Every write to a regular file past its first byte fails with `EFBIG`
/// (SQLite: a disk I/O error) until this is dropped, also by a failing
/// test.
pub struct WritesRefused;

impl WritesRefused {
    pub fn now() -> WritesRefused {
        // SIGXFSZ would end the process; ignored, the write just fails.
        unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
        set_file_size_limit(1);
        WritesRefused
    }
}

impl Drop for WritesRefused {
    fn drop(&mut self) {
        set_file_size_limit(libc::RLIM_INFINITY);
    }
}

fn set_file_size_limit(bytes: libc::rlim_t) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit) },
        0
    );
    limit.rlim_cur = bytes.min(limit.rlim_max);
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &limit) }, 0);
}
