//! Running under systemd with `Type=notify`: the daemon reports `READY=1` once its plugins are
//! started, `WATCHDOG=1` while it runs, and `STOPPING=1` when SIGTERM stops it, on the datagram
//! socket `$NOTIFY_SOCKET` names. The test plays the service manager with a socket of its own.

use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::time::Instant;

use nix::sys::signal::Signal;

use crate::{Ctx, GUARD, signal, wait_output};

/// The service manager's end: every notification received, in order.
struct Manager {
    socket: UnixDatagram,
    received: Vec<String>,
}

impl Manager {
    /// Receives until a notification has the line `line`; fails after [`GUARD`], showing what came.
    fn wait_for(&mut self, line: &str, log: impl Fn() -> String) {
        let start = Instant::now();
        let mut buf = vec![0u8; 4096];
        loop {
            if self.received.iter().any(|m| m.lines().any(|l| l == line)) {
                return;
            }
            assert!(
                start.elapsed() < GUARD,
                "no `{line}` within {GUARD:?}; received {:?}\ndaemon log:\n{}",
                self.received,
                log()
            );
            // A timed-out read only loops back to the guard.
            if let Ok(n) = self.socket.recv(&mut buf) {
                self.received
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    }

    /// The index of the first notification with the line `line`.
    fn position(&self, line: &str) -> usize {
        self.received
            .iter()
            .position(|m| m.lines().any(|l| l == line))
            .unwrap_or_else(|| panic!("no `{line}` in {:?}", self.received))
    }
}

#[test]
fn the_service_manager_hears_ready_watchdog_and_stopping() {
    let ctx = Ctx::new();
    ctx.events(1..=5);
    let plugin = ctx.test_plugin("p", "");
    ctx.config(
        &[("exit_when_idle = true", "exit_when_idle = false")],
        &plugin,
    );
    let path = ctx.path("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .expect("read timeout");
    let mut manager = Manager {
        socket,
        received: Vec::new(),
    };

    let log = std::fs::File::create(ctx.path("daemon.log")).expect("log file");
    let daemon = ctx
        .sgevents(&["run"])
        .env("NOTIFY_SOCKET", &path)
        // Every 100 ms: a few arrive quickly.
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("sgevents starts");
    ctx.started.borrow_mut().push(daemon.id());

    manager.wait_for("READY=1", || ctx.log());
    // READY=1 means every plugin actor is started.
    let ready = manager.position("READY=1");
    manager.wait_for("WATCHDOG=1", || ctx.log());

    signal(&daemon, Signal::SIGTERM);
    manager.wait_for("STOPPING=1", || ctx.log());
    assert!(
        manager.position("STOPPING=1") > ready,
        "{:?}",
        manager.received
    );
    let out = wait_output(daemon);
    assert!(
        out.status.success(),
        "sgevents failed ({}):\n{}",
        out.status,
        ctx.log()
    );
    assert_eq!(
        manager
            .received
            .iter()
            .filter(|m| m.lines().any(|l| l == "READY=1"))
            .count(),
        1,
        "READY=1 once, with no reload: {:?}",
        manager.received
    );
}
