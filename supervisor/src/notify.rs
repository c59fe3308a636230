//! The service manager's notification protocol (`sd_notify(3)`), written by hand: one datagram of
//! `KEY=VALUE` lines to the Unix socket named by `$NOTIFY_SOCKET`.
//!
//! The daemon says `READY=1` once every plugin actor is started, `RELOADING=1` and `READY=1` around
//! a configuration reload, `STOPPING=1` when it begins to stop, and `WATCHDOG=1` every half of
//! `$WATCHDOG_USEC` while it runs (see [`watchdog`]). Without `$NOTIFY_SOCKET` (not started by
//! systemd, or not with `Type=notify`) every function here does nothing.
//!
//! Notification is never a reason to fail: the first error is logged as a warning with a hint, later
//! ones only at debug level, and the daemon goes on. The socket is opened once, from the
//! environment as it was at the first call; tests build a [`Notifier`] from explicit values
//! instead, since changing the environment of a running process is not safe.
//!
//! Why not the `sd-notify` crate (0.5): it reads `$NOTIFY_SOCKET` at every call, so a test could
//! only reach it by changing the environment; it connects to path sockets only, not to the
//! abstract `@` names systemd may hand out (in containers, say); and its send may block the
//! runtime thread on a full receive queue. What it would replace is the formatting of a few
//! `KEY=VALUE` lines.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Why a notification socket cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The address in `$NOTIFY_SOCKET` is not one this daemon can send to.
    #[error(
        "`NOTIFY_SOCKET` = `{0}` is not a socket path or an abstract socket name\nhint: the service manager sets it; start the daemon with `Type=notify` or unset it"
    )]
    Address(String),
    /// The datagram socket could not be created.
    #[error(
        "cannot create a socket to notify the service manager: {0}\nhint: check the limits on open files of the daemon's user"
    )]
    Socket(io::Error),
}

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// How often the manager expects `WATCHDOG=1`, when it expects it from this process.
    watchdog: Option<Duration>,
    /// Set once a failure has been logged as a warning.
    warned: AtomicBool,
}

impl Notifier {
    /// A notifier for the socket address `socket` (a path, or an abstract name starting with `@`),
    /// with the raw values of `$WATCHDOG_USEC` and `$WATCHDOG_PID`.
    pub fn new(
        socket: &OsStr,
        watchdog_usec: Option<&OsStr>,
        watchdog_pid: Option<&OsStr>,
    ) -> Result<Notifier, NotifyError> {
        let addr = address(socket)?;
        let sock = UnixDatagram::unbound().map_err(NotifyError::Socket)?;
        // A full receive queue must never block the runtime thread that sends.
        sock.set_nonblocking(true).map_err(NotifyError::Socket)?;
        Ok(Notifier {
            socket: sock,
            addr,
            watchdog: watchdog_interval_from(watchdog_usec, watchdog_pid, std::process::id()),
            warned: AtomicBool::new(false),
        })
    }

    /// The notifier the environment describes: `None` when `$NOTIFY_SOCKET` is unset or empty, or
    /// (logged) unusable.
    pub fn from_env() -> Option<Notifier> {
        let socket = std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty())?;
        let usec = std::env::var_os("WATCHDOG_USEC");
        let pid = std::env::var_os("WATCHDOG_PID");
        match Notifier::new(&socket, usec.as_deref(), pid.as_deref()) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!("{e}");
                None
            }
        }
    }

    /// Sends `state` (`KEY=VALUE` lines) in one datagram.
    pub fn send(&self, state: &str) -> io::Result<()> {
        let sent = self.socket.send_to_addr(state.as_bytes(), &self.addr)?;
        if sent != state.len() {
            return Err(io::Error::other(format!(
                "only {sent} of {} bytes were sent",
                state.len()
            )));
        }
        Ok(())
    }

    /// Sends `state`, logging a failure: the first as a warning, the rest at debug level.
    pub fn notify(&self, state: &str) {
        if let Err(e) = self.send(state) {
            let what = state.lines().next().unwrap_or_default();
            if self.warned.swap(true, Ordering::Relaxed) {
                tracing::debug!(error = %e, "cannot send `{what}` to the service manager");
            } else {
                tracing::warn!(
                    error = %e,
                    "cannot send `{what}` to the service manager (further failures are logged at debug level)\nhint: the daemon goes on; check `NotifyAccess=` and that the manager's socket still exists"
                );
            }
        }
    }

    /// The interval at which the manager expects `WATCHDOG=1` from this process, if it does.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends `WATCHDOG=1` every half interval until `cancel` fires; returns at once when no
    /// watchdog is expected.
    pub async fn watchdog(&self, cancel: CancellationToken) {
        let Some(interval) = self.watchdog else {
            return;
        };
        let mut tick = tokio::time::interval(interval / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => self.notify("WATCHDOG=1"),
            }
        }
    }
}

/// The socket address of `$NOTIFY_SOCKET`: a file system path (absolute, as systemd gives it) or,
/// after `@`, a Linux abstract socket name.
fn address(socket: &OsStr) -> Result<SocketAddr, NotifyError> {
    let bad = || NotifyError::Address(socket.to_string_lossy().into_owned());
    let bytes = socket.as_bytes();
    match bytes.first() {
        Some(b'@') if bytes.len() > 1 => abstract_address(&bytes[1..]).ok_or_else(bad),
        Some(b'/') => SocketAddr::from_pathname(std::path::Path::new(socket)).map_err(|_| bad()),
        // Anything else (empty, relative, `vsock:`...) is not an address systemd gives a service
        // that runs on this host.
        _ => Err(bad()),
    }
}

#[cfg(target_os = "linux")]
fn abstract_address(name: &[u8]) -> Option<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name).ok()
}

#[cfg(not(target_os = "linux"))]
fn abstract_address(_name: &[u8]) -> Option<SocketAddr> {
    None
}

/// `$WATCHDOG_USEC` as an interval, when the watchdog is meant for the process `pid`: systemd sets
/// `$WATCHDOG_PID` to the main process, and a process that inherited the variables is not it.
fn watchdog_interval_from(
    usec: Option<&OsStr>,
    watchdog_pid: Option<&OsStr>,
    pid: u32,
) -> Option<Duration> {
    let usec: u64 = usec?.to_str()?.trim().parse().ok()?;
    if usec == 0 {
        return None;
    }
    if let Some(p) = watchdog_pid {
        let p: u32 = p.to_str()?.trim().parse().ok()?;
        if p != pid {
            return None;
        }
    }
    Some(Duration::from_micros(usec))
}

/// The process's notifier, opened from the environment at the first use.
fn global() -> Option<&'static Notifier> {
    static NOTIFIER: OnceLock<Option<Notifier>> = OnceLock::new();
    NOTIFIER.get_or_init(Notifier::from_env).as_ref()
}

/// Tells the service manager that the daemon is up: every plugin actor is started.
pub fn ready() {
    if let Some(n) = global() {
        n.notify("READY=1");
    }
}

/// Tells the service manager that a configuration reload begins; [`ready`] ends it. systemd wants
/// the time of the reload in `CLOCK_MONOTONIC` microseconds with it.
pub fn reloading() {
    if let Some(n) = global() {
        n.notify(&reloading_message(monotonic_usec()));
    }
}

fn reloading_message(monotonic_usec: u64) -> String {
    format!("RELOADING=1\nMONOTONIC_USEC={monotonic_usec}")
}

/// `CLOCK_MONOTONIC` in microseconds, the clock systemd's `MONOTONIC_USEC` is read against.
fn monotonic_usec() -> u64 {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        (t.tv_sec() as u64) * 1_000_000 + (t.tv_nsec() as u64) / 1_000
    })
}

/// Tells the service manager that the daemon is stopping (plugins are being drained).
pub fn stopping() {
    if let Some(n) = global() {
        n.notify("STOPPING=1");
    }
}

/// Sets the one-line status `systemctl status` shows.
pub fn status(text: &str) {
    if let Some(n) = global() {
        n.notify(&status_message(text));
    }
}

fn status_message(text: &str) -> String {
    // One notification line per key: a newline would start another (unknown) key.
    format!("STATUS={}", text.replace(['\n', '\r'], " "))
}

/// The interval at which the service manager expects `WATCHDOG=1` from this process, if it does.
pub fn watchdog_interval() -> Option<Duration> {
    global().and_then(Notifier::watchdog_interval)
}

/// Sends `WATCHDOG=1` every half [`watchdog_interval`] until `cancel` fires; returns at once when
/// the service manager expects no watchdog. Spawn it once the daemon is ready.
pub async fn watchdog(cancel: CancellationToken) {
    if let Some(n) = global() {
        n.watchdog(cancel).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bound socket standing in for the service manager, in its own temporary folder.
    struct Manager {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
        socket: UnixDatagram,
    }

    impl Manager {
        fn new() -> Manager {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("notify.sock");
            let socket = UnixDatagram::bind(&path).expect("bind");
            socket
                .set_read_timeout(Some(Duration::from_secs(30)))
                .expect("timeout");
            Manager {
                _dir: dir,
                path,
                socket,
            }
        }

        fn recv(&self) -> String {
            let mut buf = [0u8; 4096];
            let n = self.socket.recv(&mut buf).expect("a notification");
            String::from_utf8(buf[..n].to_vec()).expect("utf-8")
        }
    }

    #[test]
    fn messages_reach_a_path_socket() {
        let m = Manager::new();
        let n = Notifier::new(m.path.as_os_str(), None, None).expect("notifier");
        n.send("READY=1").expect("send");
        assert_eq!(m.recv(), "READY=1");
        n.send(&status_message("caught up\nall 3 plugins"))
            .expect("send");
        assert_eq!(m.recv(), "STATUS=caught up all 3 plugins");
        n.send(&reloading_message(monotonic_usec())).expect("send");
        let msg = m.recv();
        let usec: u64 = msg
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .unwrap_or_else(|| panic!("{msg}"))
            .parse()
            .expect("a number");
        assert!(usec > 0, "{msg}");
        assert_eq!(n.watchdog_interval(), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn messages_reach_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("sgevents-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract name");
        let server = UnixDatagram::bind_addr(&addr).expect("bind");
        server
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let n = Notifier::new(OsStr::new(&format!("@{name}")), None, None).expect("notifier");
        n.send("STOPPING=1").expect("send");
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).expect("a notification");
        assert_eq!(&buf[..len], b"STOPPING=1");
    }

    #[test]
    fn unusable_addresses_are_refused_with_a_hint() {
        for bad in ["relative/notify.sock", "vsock:2:1234", "@"] {
            let err = Notifier::new(OsStr::new(bad), None, None)
                .expect_err(bad)
                .to_string();
            assert!(
                err.starts_with(&format!("`NOTIFY_SOCKET` = `{bad}`")),
                "{err}"
            );
            assert!(err.contains("\nhint: "), "{err}");
        }
    }

    #[test]
    fn a_missing_manager_is_not_fatal() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("gone.sock");
        let n = Notifier::new(path.as_os_str(), None, None).expect("notifier");
        assert!(n.send("READY=1").is_err(), "nobody listens");
        // Logged, not raised; a second failure is quieter but just as harmless.
        n.notify("READY=1");
        n.notify("READY=1");
        assert!(n.warned.load(Ordering::Relaxed));
    }

    #[test]
    fn the_watchdog_interval_belongs_to_the_main_process() {
        let os = |s: &'static str| Some(OsStr::new(s));
        let me = 4242;
        assert_eq!(
            watchdog_interval_from(os("200000"), None, me),
            Some(Duration::from_millis(200))
        );
        assert_eq!(
            watchdog_interval_from(os("200000"), os("4242"), me),
            Some(Duration::from_millis(200))
        );
        assert_eq!(watchdog_interval_from(os("200000"), os("1"), me), None);
        assert_eq!(watchdog_interval_from(os("0"), None, me), None);
        assert_eq!(watchdog_interval_from(os("soon"), None, me), None);
        assert_eq!(watchdog_interval_from(None, None, me), None);
    }

    #[tokio::test]
    async fn the_watchdog_pings_until_cancelled() {
        let m = Manager::new();
        let n = std::sync::Arc::new(
            Notifier::new(m.path.as_os_str(), Some(OsStr::new("20000")), None).expect("notifier"),
        );
        let cancel = CancellationToken::new();
        let task = tokio::spawn({
            let (n, cancel) = (n.clone(), cancel.clone());
            async move { n.watchdog(cancel).await }
        });
        let m = tokio::task::spawn_blocking(move || {
            for _ in 0..3 {
                assert_eq!(m.recv(), "WATCHDOG=1");
            }
            m
        })
        .await
        .expect("three pings");
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the loop ends when cancelled")
            .expect("no panic");
        drop(m);
    }

    #[tokio::test]
    async fn without_a_watchdog_the_loop_returns_at_once() {
        let m = Manager::new();
        let n = Notifier::new(m.path.as_os_str(), None, None).expect("notifier");
        tokio::time::timeout(
            Duration::from_secs(30),
            n.watchdog(CancellationToken::new()),
        )
        .await
        .expect("returns without being cancelled");
    }
}
