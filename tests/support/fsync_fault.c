/*
 * An LD_PRELOAD shim that makes the daemon's fsync of its SQLite
 * write-ahead log fail with EIO, on demand, as a failing disk does. SQLite
 * then fails the COMMIT with SQLITE_IOERR_FSYNC after the commit frame was
 * written: the case the store calls OutcomeUnknown. Nothing else in the
 * daemon can be made to fail that way from outside (a full disk or a file
 * size limit fails the frame's write instead, see disk_full.rs).
 *
 * Built by tests/support/fsync_fault.rs with the system C compiler; the
 * tests that use it say what they prove.
 *
 * Only fsync and fdatasync are interposed: the bundled SQLite's unix VFS
 * syncs through full_fsync(), which calls fdatasync(), itself #defined to
 * fsync() unless SQLite is built with HAVE_FDATASYNC (libsqlite3-sys does
 * not define it, so today fsync is the one called). It never calls syncfs
 * or sync_file_range.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The environment variable naming the trigger file: while that file
 * exists, syncs of a write-ahead log fail. A file, not a signal or an
 * environment change, so the test can switch the fault on and off in a
 * running daemon without touching it. */
#define TRIGGER_VARIABLE "FSYNC_FAULT_TRIGGER"

/* Set (to anything) in the environment, a faulted sync does not fail but
 * never returns while the trigger exists, as on a disk that stopped
 * answering: the writer thread is then stuck in the kernel, which no
 * timeout inside the daemon can interrupt. */
#define HANG_VARIABLE "FSYNC_FAULT_HANG"

/* Read once, at load, before the daemon starts a thread: getenv is not
 * safe against a setenv in another thread, and the syncs come from the
 * store's writer thread while others run. */
static char trigger[PATH_MAX];
static int hang;

/* libc's own calls, found at load too (the next definition after this
 * shim's), so no thread races to fill them in. */
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);

__attribute__((constructor)) static void load(void) {
    const char *named = getenv(TRIGGER_VARIABLE);
    if (named != NULL && strlen(named) < sizeof trigger) {
        strcpy(trigger, named);
    }
    hang = getenv(HANG_VARIABLE) != NULL;
    real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
}

/* Whether a sync of fd must fail now: the trigger file exists and fd is
 * a write-ahead log ("<database>-wal"). Only the WAL: its sync is the one
 * a COMMIT waits for, and the database file, its -shm and the media files
 * keep working, as they would on a disk whose failure hit one file. The
 * path comes from the kernel (/proc/self/fd), so no open() needs to be
 * tracked. */
static int faulted(int fd, char *path, size_t size) {
    if (trigger[0] == '\0' || access(trigger, F_OK) != 0) {
        return 0;
    }
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, size - 1);
    if (n < 0) {
        return 0;
    }
    path[n] = '\0';
    return n >= 4 && strcmp(path + n - 4, "-wal") == 0;
}

/* Says on standard error (the daemon's log) that a fault was injected,
 * so a test that sees no failure can tell a shim that never fired from a
 * daemon that ignored the error. */
static int fail(const char *call, const char *path) {
    fprintf(stderr, "fsync_fault: %s(%s) failed with EIO (injected)\n", call, path);
    errno = EIO;
    return -1;
}

/* The hanging fault: waits while the trigger exists, then syncs. */
static void stall(const char *call, const char *path) {
    fprintf(stderr, "fsync_fault: %s(%s) stalled (injected)\n", call, path);
    while (access(trigger, F_OK) == 0) {
        usleep(50 * 1000);
    }
}

int fsync(int fd) {
    char path[PATH_MAX];
    if (faulted(fd, path, sizeof path)) {
        if (!hang) {
            return fail("fsync", path);
        }
        stall("fsync", path);
    }
    return real_fsync(fd);
}

int fdatasync(int fd) {
    char path[PATH_MAX];
    if (faulted(fd, path, sizeof path)) {
        if (!hang) {
            return fail("fdatasync", path);
        }
        stall("fdatasync", path);
    }
    return real_fdatasync(fd);
}
