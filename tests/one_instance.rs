//! A second `phonerelay serve` on a state dir that one already serves
//! refuses to start, naming the first; once the first stops, it starts.

mod support;

use support::process::*;

#[test]
fn a_second_daemon_on_the_same_store_refuses_and_names_the_first() {
    let Simulated {
        dir: _dir,
        port,
        config,
    } = Simulated::new();
    let first = DaemonProcess::start(&config, port);
    let pid = first.child.id();

    let second = bin()
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "another phonerelay (pid {pid}) is serving the store"
        )),
        "{stderr}"
    );

    assert_eq!(first.terminate().code(), Some(0));
    let after = DaemonProcess::start(&config, port);
    assert_eq!(after.terminate().code(), Some(0));
}
