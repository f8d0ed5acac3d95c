//! Running the real `phonerelay` binary as a child process, as an operator
//! or systemd would.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_phonerelay"))
}

/// `phonerelay keys create --name t` on `config`: the new key (default
/// scopes), as an admin would make one.
pub fn create_key_cli(config: &Path) -> String {
    let out = run(&[
        "keys",
        "create",
        "--config",
        config.to_str().unwrap(),
        "--name",
        "t",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("phonerelay runs")
}

/// Run the binary with `stdin` on its standard input (keys are handed
/// over that way, never as arguments).
pub fn run_with_stdin(args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("phonerelay runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// `dir/phonerelay.toml`: listen on `port`, the store under `dir/state`,
/// and one simulated modem, phone_id `sim-1`, inside the daemon.
pub fn simulated_modem_config(dir: &Path, port: u16) -> PathBuf {
    modem_config(dir, port, Path::new("sim"), "")
}

/// As [`simulated_modem_config`], the simulated modem's behaviour set by
/// `sim_keys` (TOML lines of its `[channels.sms.modems.sim]` table).
pub fn simulated_modem_config_with(dir: &Path, port: u16, sim_keys: &str) -> PathBuf {
    modem_config(
        dir,
        port,
        Path::new("sim"),
        &format!("[channels.sms.modems.sim]\n{sim_keys}"),
    )
}

/// A fresh dir holding a [`simulated_modem_config`] on a free port: where
/// most tests of the binary start.
pub struct Simulated {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub config: PathBuf,
}

impl Simulated {
    pub fn new() -> Simulated {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = simulated_modem_config(dir.path(), port);
        Simulated { dir, port, config }
    }
}

/// As [`simulated_modem_config`], with the modem `sim-1` at `device` (a
/// `ModemSimProcess`'s link, say) and `modem_keys` (TOML lines) added to
/// its table.
pub fn modem_config(dir: &Path, port: u16, device: &Path, modem_keys: &str) -> PathBuf {
    daemon_config(
        dir,
        port,
        "",
        &format!(
            "[[channels.sms.modems]]\nphone_id = \"sim-1\"\ndevice = \"{}\"\n{modem_keys}",
            device.display()
        ),
    )
}

/// `dir/phonerelay.toml`: listen on `port` with `server_keys` (TOML lines)
/// in `[server]`, the store under `dir/state`, then `rest` (tables).
pub fn daemon_config(dir: &Path, port: u16, server_keys: &str, rest: &str) -> PathBuf {
    let config = dir.join("phonerelay.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n{server_keys}\
             [storage]\nstate_dir = \"state\"\n{rest}"
        ),
    )
    .unwrap();
    config
}

/// `POST /api/v1/messages`: an SMS with `text` from the simulated modem
/// of [`simulated_modem_config`], with an `Idempotency-Key` if given.
pub fn post_sms(
    http: &reqwest::blocking::Client,
    base: &str,
    key: &str,
    text: &str,
    idempotency_key: Option<&str>,
) -> reqwest::Result<reqwest::blocking::Response> {
    let mut request = http
        .post(format!("{base}/api/v1/messages"))
        .bearer_auth(key)
        .json(&serde_json::json!({
            "phone_id": "sim-1", "channel": "sms", "to": "+15551230001", "text": text,
        }));
    if let Some(idempotency_key) = idempotency_key {
        request = request.header("Idempotency-Key", idempotency_key);
    }
    request.send()
}

/// `GET /api/v1/messages/{id}`, the body as JSON.
pub fn get_message(
    http: &reqwest::blocking::Client,
    daemon: &DaemonProcess,
    key: &str,
    id: &str,
) -> serde_json::Value {
    http.get(format!("{}/api/v1/messages/{id}", daemon.base))
        .bearer_auth(key)
        .send()
        .unwrap()
        .json()
        .unwrap()
}

/// Poll the message until `done` holds, for at most `seconds`.
pub fn wait_for_message(
    http: &reqwest::blocking::Client,
    daemon: &DaemonProcess,
    key: &str,
    id: &str,
    seconds: u64,
    done: impl Fn(&serde_json::Value) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let message = get_message(http, daemon, key, id);
        if done(&message) {
            return;
        }
        assert!(Instant::now() < deadline, "waited in vain: {message}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every entry of a paged list (`/api/v1/messages`, `/api/v1/inbound`),
/// newest first, following `next_cursor` to the end.
pub fn all_pages(
    http: &reqwest::blocking::Client,
    base: &str,
    key: &str,
    path: &str,
) -> Vec<serde_json::Value> {
    let mut entries = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}{path}?limit=500");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: serde_json::Value = http
            .get(url)
            .bearer_auth(key)
            .send()
            .unwrap()
            .json()
            .unwrap();
        entries.extend(page["messages"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return entries,
        }
    }
}

/// A port for a daemon to listen on that no other test of this process
/// was given. A port the kernel hands out for `:0` is free only until the
/// listener is dropped: two tests running side by side were given the
/// same one, and the second daemon's failed bind went unseen because the
/// first answered on it. So ports come from a counter, below the kernel's
/// ephemeral range (where no outgoing connection or `:0` listener can
/// take one meanwhile), each checked free by a bind.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static GIVEN: AtomicU32 = AtomicU32::new(0);
    let (low, span) = reserved_ports();
    // Test processes running at once start at different places.
    let start = std::process::id() % span;
    for _ in 0..span {
        let n = GIVEN.fetch_add(1, Ordering::Relaxed);
        let port = low + (start + n) % span;
        if std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
    panic!("no free port in {low}..{}", low + span);
}

/// The ports below the kernel's ephemeral range: `(first, how many)`.
fn reserved_ports() -> (u32, u32) {
    const SPAN: u32 = 10_000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    match ephemeral_low.checked_sub(SPAN) {
        Some(low) if low >= 1024 => (low, SPAN),
        // An unusual range: unique within the process is still kept.
        _ => (20_000, SPAN),
    }
}

/// A daemon child process; killed on drop.
pub struct DaemonProcess {
    pub child: Child,
    pub base: String,
    pub config: PathBuf,
}

impl DaemonProcess {
    pub fn start(config: &Path, port: u16) -> DaemonProcess {
        Self::start_command(bin(), config, port, Stdio::inherit())
    }

    /// As [`Self::start`], with `env` added to the environment.
    pub fn start_with_env(config: &Path, port: u16, env: &[(&str, &str)]) -> DaemonProcess {
        let mut command = bin();
        command.envs(env.iter().copied());
        Self::start_command(command, config, port, Stdio::inherit())
    }

    /// As [`Self::start_with_env`], the daemon's standard error (its log)
    /// written to `log` instead of the test's, for the test to read.
    pub fn start_logged(
        config: &Path,
        port: u16,
        env: &[(&str, &str)],
        log: &Path,
    ) -> DaemonProcess {
        let mut command = bin();
        command.envs(env.iter().copied());
        let stderr = std::fs::File::create(log).unwrap();
        Self::start_command(command, config, port, stderr.into())
    }

    /// As [`Self::start`], with the process's file size limit
    /// (`RLIMIT_FSIZE`, which systemd's `LimitFSIZE=` sets) at `bytes`.
    pub fn start_with_file_size_limit(config: &Path, port: u16, bytes: u64) -> DaemonProcess {
        use std::os::unix::process::CommandExt;
        let mut command = bin();
        // SAFETY: setrlimit is async-signal-safe, as pre_exec requires.
        unsafe {
            command.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: bytes,
                    rlim_max: libc::RLIM_INFINITY,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Self::start_command(command, config, port, Stdio::inherit())
    }

    fn start_command(
        mut command: Command,
        config: &Path,
        port: u16,
        stderr: Stdio,
    ) -> DaemonProcess {
        // Warnings and errors only, unless the test asked for more.
        if !command.get_envs().any(|(name, _)| name == "RUST_LOG") {
            command.env("RUST_LOG", "warn");
        }
        let child = command
            .args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("daemon starts");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut daemon = DaemonProcess {
            child,
            base,
            config: config.to_path_buf(),
        };
        // A daemon that exits (its port taken, say) must fail the test
        // here, not leave it talking to whatever else answers.
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = daemon.child.try_wait().unwrap() {
                panic!("the daemon exited before listening on {port}: {status}");
            }
            assert!(Instant::now() < deadline, "daemon never listened on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    /// SIGKILL: no shutdown code runs, as in a power cut or OOM kill.
    pub fn crash(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM and the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        self.signal_term();
        self.child.wait().unwrap()
    }

    /// SIGTERM, without waiting for the exit.
    pub fn signal_term(&self) {
        unsafe_kill(self.child.id() as i32);
    }
}

fn unsafe_kill(pid: i32) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long a test waits for the simulator's control address, or for
/// its answer to a control command: one that died or stalls fails the
/// test, naming what it waited for, instead of hanging it.
pub const SIM_ANSWER_DEADLINE: Duration = Duration::from_secs(30);

/// The control address a `modem-sim` prints on `stdout` (`control: ADDR`),
/// read within `deadline`; what went wrong otherwise. Its output is
/// drained after that, so the simulator never blocks on a full pipe.
pub fn control_address(
    stdout: impl std::io::Read + Send + 'static,
    deadline: Duration,
) -> Result<String, String> {
    let (found, address) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let Ok(line) = line else { return };
            if let Some(rest) = line.strip_prefix("control: ") {
                let _ = found.send(rest.split_whitespace().next().map(str::to_string));
                break;
            }
        }
        for _ in lines {}
    });
    match address.recv_timeout(deadline) {
        Ok(Some(address)) => Ok(address),
        Ok(None) => Err("modem-sim printed `control:` without an address".into()),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(format!(
            "modem-sim printed no `control:` address within {deadline:?}"
        )),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            Err("modem-sim ended before it printed its `control:` address".into())
        }
    }
}

/// `command` sent to the control port at `address`, its answer lines up
/// to and including `ok`/`error`; panics naming the command when the
/// answer does not end within `deadline`.
pub fn control_answer(address: &str, command: &str, deadline: Duration) -> Vec<String> {
    use std::io::Write;
    let started = Instant::now();
    let late = || format!("modem-sim's answer to `{command}` did not end within {deadline:?}");
    let mut stream = std::net::TcpStream::connect(address)
        .unwrap_or_else(|e| panic!("modem-sim's control port for `{command}`: {e}"));
    writeln!(stream, "{command}").unwrap();
    let mut reader = BufReader::new(stream);
    let mut out = Vec::new();
    loop {
        let left = deadline
            .checked_sub(started.elapsed())
            .unwrap_or_else(|| panic!("{}", late()));
        reader
            .get_ref()
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let mut line = String::new();
        match reader.read_line(&mut line) {
            // Closed: the answer is what came, as before the deadline.
            Ok(0) => return out,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("{}", late())
            }
            Err(e) => panic!("modem-sim's answer to `{command}`: {e}"),
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        let done = line.starts_with("ok") || line.starts_with("error");
        out.push(line);
        if done {
            return out;
        }
    }
}

/// `phonerelay modem-sim` in its own process, so it outlives a daemon crash.
pub struct ModemSimProcess {
    pub child: Child,
    pub link: PathBuf,
    pub control: String,
}

impl ModemSimProcess {
    pub fn start(link: &Path, extra: &[&str]) -> ModemSimProcess {
        let mut child = bin()
            .arg("modem-sim")
            .arg("--link")
            .arg(link)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("modem-sim starts");
        let stdout = child.stdout.take().unwrap();
        match control_address(stdout, SIM_ANSWER_DEADLINE) {
            Ok(control) => ModemSimProcess {
                child,
                link: link.to_path_buf(),
                control,
            },
            Err(why) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{why}");
            }
        }
    }

    /// One control command; the answer lines up to and including `ok`/`error`.
    pub fn control(&self, command: &str) -> Vec<String> {
        control_answer(&self.control, command, SIM_ANSWER_DEADLINE)
    }

    /// Texts of the messages the simulated network accepted.
    pub fn sent_texts(&self) -> Vec<String> {
        self.control("sent")
            .into_iter()
            .filter(|l| !l.starts_with("ok"))
            // "<to> mr=[1, 2] <text>"
            .map(|l| {
                l.split_once("] ")
                    .map(|(_, text)| text.to_string())
                    .unwrap_or_default()
            })
            .collect()
    }
}

impl Drop for ModemSimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
