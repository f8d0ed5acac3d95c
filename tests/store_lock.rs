//! The store lock between `phonerelay restore` and the commands that write
//! to the store beside the daemon (`keys`, `pair`, `unpair`, `inbound`),
//! run as the real binary. Without it a `keys revoke` made while a restore
//! replaces the store is lost, and the revoked key works again.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use phonerelay::store_lock;
use support::process::*;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A config with its state in `dir/state`, that state dir, and a key made
/// there (which makes the store).
fn with_a_key(dir: &Path) -> (PathBuf, PathBuf, String) {
    let config = daemon_config(dir, 0, "", "");
    let key = create_key_cli(&config);
    (config, dir.join("state"), key)
}

/// The id in a key as `keys create` prints it (`prk_<id>_<secret>`).
fn key_id(key: &str) -> &str {
    key.split('_').nth(1).unwrap()
}

/// Every key row: id, name, when revoked.
fn key_rows(state: &Path) -> Vec<(String, String, Option<i64>)> {
    let conn = rusqlite::Connection::open(state.join("phonerelay.sqlite3")).unwrap();
    conn.prepare("SELECT key_id, name, revoked_at FROM api_keys ORDER BY key_id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// A hash of `bytes`, to compare files by without printing them.
fn hash(bytes: &[u8]) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

/// The state dir's files with a hash of their contents, but the lock
/// files (which a refused restore may create): what a refused restore
/// must leave alone.
fn store_files(state: &Path) -> Vec<(String, u64)> {
    let mut files: Vec<_> = std::fs::read_dir(state)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| e.file_name().into_string().unwrap())
        .filter(|name| !name.ends_with(".lock"))
        .map(|name| {
            let bytes = std::fs::read(state.join(&name)).unwrap();
            (name, hash(&bytes))
        })
        .collect();
    files.sort();
    files
}

/// While a restore holds the store lock, `keys revoke` and `keys create`
/// (and the other commands that open the store) refuse at once, say why,
/// exit 1, and write nothing: the revoke is not made on a store about to
/// be replaced, where it would be lost.
#[test]
fn keys_and_pair_commands_are_refused_while_a_restore_replaces_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (config, state, key) = with_a_key(dir.path());
    let config = config.to_str().unwrap();
    let id = key_id(&key);
    let before = key_rows(&state);
    assert_eq!(before.len(), 1);

    let restore = store_lock::exclusive(&state).unwrap();
    let commands: [&[&str]; 6] = [
        &["keys", "revoke", id],
        &["keys", "create", "--name", "later"],
        &["keys", "list"],
        &["unpair"],
        &["inbound", "retry", "0194f0c2-7a4e-7000-8000-000000000001"],
        &["pair", "--status"],
    ];
    for command in commands {
        let started = Instant::now();
        let out = run(&[command, &["--config", config]].concat());
        let said = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{command:?}: {said}");
        assert!(
            said.contains("a restore (phonerelay restore) is replacing the store")
                && said.contains("try again when it has finished"),
            "{command:?}: {said}"
        );
        assert!(out.stdout.is_empty(), "{command:?}: {}", text(&out.stdout));
        assert!(
            started.elapsed() < store_lock::RESTORE_WAIT,
            "{command:?} waited"
        );
    }
    drop(restore);
    assert_eq!(key_rows(&state), before, "a refused command wrote");

    // Once the restore is over, the same revoke goes through.
    let revoked = run(&["keys", "revoke", "--config", config, id]);
    assert!(revoked.status.success(), "{}", text(&revoked.stderr));
    assert!(key_rows(&state)[0].2.is_some());
}

/// While a command has the store open (holding the lock shared), a
/// restore waits its bounded time, then refuses, exit 1, naming what
/// holds the store, and leaves the store as it was: it never reads keys
/// that the command may still change. One let go while it waits lets the
/// restore through.
#[test]
fn a_restore_waits_for_a_command_that_has_the_store_open_then_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let (config, state, key) = with_a_key(dir.path());
    let config = config.to_str().unwrap();
    let copy = dir.path().join("copy.sqlite3");
    let backup = run(&["backup", "--config", config, copy.to_str().unwrap()]);
    assert!(backup.status.success(), "{}", text(&backup.stderr));
    let revoked = run(&["keys", "revoke", "--config", config, key_id(&key)]);
    assert!(revoked.status.success(), "{}", text(&revoked.stderr));
    let restore = || run(&["restore", "--config", config, copy.to_str().unwrap()]);

    let keys = store_lock::shared(&state).unwrap();
    let before = store_files(&state);
    let started = Instant::now();
    let refused = restore();
    let waited = started.elapsed();
    let said = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{said}");
    assert!(
        said.contains("restore failed: another phonerelay command (keys, pair, unpair or inbound)")
            && said.contains("try again when it has finished"),
        "{said}"
    );
    assert!(
        waited >= store_lock::RESTORE_WAIT,
        "refused after {waited:?}"
    );
    assert!(
        waited < store_lock::RESTORE_WAIT + Duration::from_secs(30),
        "waited {waited:?}"
    );
    assert_eq!(store_files(&state), before, "the store was touched");
    assert!(!text(&refused.stdout).contains("restored"));

    // A command that finishes while the restore waits lets it in.
    let letting_go = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        drop(keys);
    });
    let out = restore();
    letting_go.join().unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains("1 revoked after it still revoked"),
        "{stdout}"
    );
}

/// An operator who runs a command by hand as root, in the state dir of
/// the service's user (here uid/gid 65534), leaves every file it made
/// that user's: the store, its WAL and shared memory (SQLite's own rule),
/// the store lock, the local key. Left root's, the service could open
/// none of them and would not start. (The tests run as root; elsewhere
/// there is nothing to give.)
#[test]
fn files_a_root_command_makes_in_the_service_s_state_dir_are_the_service_s() {
    use std::os::unix::fs::MetadataExt;
    if !rustix::process::geteuid().is_root() {
        panic!("this test needs root, as the suite has: it runs a command as root");
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    const SERVICE: u32 = 65534;
    std::os::unix::fs::chown(&state, Some(SERVICE), Some(SERVICE)).unwrap();
    let config = daemon_config(dir.path(), 0, "", "");
    create_key_cli(&config);

    let mut owners: Vec<(String, u32, u32)> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            let meta = e.metadata().unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                meta.uid(),
                meta.gid(),
            )
        })
        .collect();
    owners.sort();
    let names: Vec<&str> = owners.iter().map(|(n, ..)| n.as_str()).collect();
    assert!(
        names.contains(&"phonerelay.sqlite3") && names.contains(&store_lock::LOCK_FILE),
        "{names:?}"
    );
    for (name, uid, gid) in &owners {
        assert_eq!(
            (*uid, *gid),
            (SERVICE, SERVICE),
            "{name} is not the service's"
        );
    }
}
