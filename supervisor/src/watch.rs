//! The plugin file watcher behind hot reload: it says *that* plugin files changed, in debounced
//! batches, and the daemon decides what that means (it discovers the plugins again and compares
//! each one's [`PluginSpec::fingerprint`](crate::config::PluginSpec::fingerprint)).
//!
//! # What is watched
//!
//! - Each plugin folder ([`Targets::dirs`]), not recursively: a change to any entry directly in it
//!   is reported, except editor temporary files ([`is_editor_temp`](crate::config::is_editor_temp)) and `__pycache__`.
//! - Each configured command's executable ([`Targets::files`]) through its *parent folder*, filtered
//!   by file name: watching the file itself would lose it at the first atomic save (write `x.tmp`,
//!   rename it over `x`) or delete-and-recreate, which replace the inode the watch was on. A symlink
//!   is followed once, at start: the folder of the file it points to is watched too, and a change
//!   there is reported under the configured path.
//! - A folder that does not exist (yet, or any more) is reported as a warning, and its nearest
//!   existing parent is watched until it appears; then it is watched itself and reported as changed.
//!   A watched folder that is removed or renamed away goes back to that state.
//!
//! Only events that can change what a plugin runs count: creations, removals, renames, writes and
//! metadata changes (a `chmod +x`). Opening and reading files does not, or spawning a plugin (which
//! opens its executable) would report a change and restart it forever.
//!
//! # Debouncing
//!
//! Saving a file is several events (create, write, write, close, rename), and a copy of a large
//! executable many more. The watcher collects the changed paths and emits one
//! [`WatchEvent::Changed`] once no relevant event arrived for the debounce delay, or at the latest
//! [`MAX_DELAY_FACTOR`] delays after the batch's first event, so that a file written without pause
//! (a plugin's own log in its folder) cannot hold every other change back forever. While the
//! receiver is slow, later changes merge into the batch that waits.
//!
//! # Failures
//!
//! inotify has per-user limits: `fs.inotify.max_user_instances` (an `EMFILE` when the watcher
//! starts) and `fs.inotify.max_user_watches` (an `ENOSPC` when a folder is added). Reaching one at
//! start is a [`WatchError`]; later, and for any error the kernel reports while running, it is a
//! [`WatchEvent::Failed`]. Both carry a hint; the daemon logs them and runs on without hot reload.
//! A folder that cannot be watched for another reason (permissions) is skipped with a warning.
//!
//! The actor owns the `notify` watcher; the `notify` callback only forwards. Dropping the
//! [`Watcher`] (or the receiver) stops the actor, which drops the inotify instance.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ::notify::event::{AccessKind, AccessMode, ModifyKind};
use ::notify::{Event, EventKind, RecursiveMode, Watcher as _};
use nix::errno::Errno;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::config::is_editor_temp;

/// A batch is emitted at the latest this many debounce delays after its first event.
pub(crate) const MAX_DELAY_FACTOR: u32 = 10;

/// What to watch.
#[derive(Debug, Clone, Default)]
pub(crate) struct Targets {
    /// Plugin folders (`plugins.paths`), watched non-recursively.
    pub(crate) dirs: Vec<PathBuf>,
    /// Executables of configured commands (see
    /// [`PluginSpec::executable`](crate::config::PluginSpec::executable)).
    pub(crate) files: Vec<PathBuf>,
}

/// What the watcher reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WatchEvent {
    /// These paths changed (sorted, without duplicates): an entry of a plugin folder, a configured
    /// executable, or a folder that appeared or disappeared.
    Changed(Vec<PathBuf>),
    /// Watching failed (the message ends with a `hint:` line); changes may go unnoticed from now on.
    Failed(String),
}

/// The watcher could not start.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct WatchError {
    message: String,
}

/// The running watcher. Dropping it stops watching.
#[derive(Debug)]
pub(crate) struct Watcher {
    _stop: DropGuard,
}

impl Watcher {
    /// Starts watching `targets`; changes arrive on the receiver in batches, `debounce` after the
    /// last one. Must be called within a tokio runtime (the actor is spawned on it).
    pub(crate) fn start(
        targets: &Targets,
        debounce: Duration,
    ) -> Result<(Watcher, mpsc::Receiver<WatchEvent>), WatchError> {
        let (raw_tx, raw_rx) = mpsc::unbounded_channel();
        // The callback runs on notify's own thread: it only forwards.
        let inner = ::notify::recommended_watcher(move |res| {
            let _ = raw_tx.send(res);
        })
        .map_err(|e| WatchError {
            message: describe(&e, None),
        })?;
        let mut actor = Actor {
            inner,
            targets: Vec::new(),
            watched: BTreeMap::new(),
        };
        for dir in &targets.dirs {
            let home = clean(dir);
            actor.targets.push(Target {
                report: home.clone(),
                home,
                name: None,
                at: None,
            });
        }
        for file in &targets.files {
            let report = clean(file);
            let mut paths = vec![report.clone()];
            if let Some(real) = symlink_target(&report) {
                paths.push(real);
            }
            for path in paths {
                let (Some(name), Some(home)) = (path.file_name(), path.parent()) else {
                    tracing::warn!(
                        "cannot watch `{}`: not a file path\nhint: name the plugin's executable by its path",
                        path.display()
                    );
                    continue;
                };
                actor.targets.push(Target {
                    home: home.to_path_buf(),
                    name: Some(name.to_owned()),
                    report: report.clone(),
                    at: None,
                });
            }
        }
        for i in 0..actor.targets.len() {
            actor.arm(i).map_err(|message| WatchError { message })?;
        }
        let (tx, rx) = mpsc::channel(16);
        let stop = CancellationToken::new();
        tokio::spawn(actor.run(raw_rx, tx, stop.clone(), debounce));
        Ok((
            Watcher {
                _stop: stop.drop_guard(),
            },
            rx,
        ))
    }
}

/// Entries of a plugin folder whose changes are ignored: editor files, and Python's byte-code cache
/// that a Python plugin may write next to itself.
fn is_noise(path: &Path) -> bool {
    is_editor_temp(path) || path.file_name().is_some_and(|n| n == "__pycache__")
}

/// One thing to watch.
#[derive(Debug)]
struct Target {
    /// The folder it needs watched: the plugin folder itself, or the executable's parent.
    home: PathBuf,
    /// For an executable: its file name in `home`. `None` for a plugin folder.
    name: Option<OsString>,
    /// The path reported when it changes: the plugin folder, or the executable as configured.
    report: PathBuf,
    /// The folder watched for it now: `home`, an existing parent of it while it is missing, or
    /// `None` when it could not be watched.
    at: Option<PathBuf>,
}

/// The watcher's task: owns the `notify` watcher and the targets, filters and batches events.
struct Actor {
    inner: ::notify::RecommendedWatcher,
    targets: Vec<Target>,
    /// Folders watched, with how many targets use each (one inotify watch per folder).
    watched: BTreeMap<PathBuf, usize>,
}

impl Actor {
    async fn run(
        mut self,
        mut raw: mpsc::UnboundedReceiver<::notify::Result<Event>>,
        out: mpsc::Sender<WatchEvent>,
        stop: CancellationToken,
        debounce: Duration,
    ) {
        let mut batch = BTreeSet::new();
        let mut failures = VecDeque::new();
        // When the batch's first and latest relevant events arrived.
        let mut first: Option<Instant> = None;
        let mut last = Instant::now();
        // The batch is complete and waits for room in the channel.
        let mut ready = false;
        loop {
            let due = first.map(|f| (last + debounce).min(f + debounce * MAX_DELAY_FACTOR));
            // Not `biased`: a steady stream of raw events must not starve the timer.
            tokio::select! {
                _ = stop.cancelled() => return,
                res = raw.recv() => match res {
                    None => return,
                    Some(Ok(event)) => {
                        if self.on_event(&event, &mut batch, &mut failures) {
                            let now = Instant::now();
                            first.get_or_insert(now);
                            last = now;
                        }
                    }
                    Some(Err(e)) => {
                        failures.push_back(format!(
                            "the plugin file watcher failed: {}",
                            describe(&e, None)
                        ));
                    }
                },
                permit = out.reserve(), if ready || !failures.is_empty() => {
                    let Ok(permit) = permit else { return };
                    if let Some(message) = failures.pop_front() {
                        permit.send(WatchEvent::Failed(message));
                    } else {
                        permit.send(WatchEvent::Changed(std::mem::take(&mut batch).into_iter().collect()));
                        first = None;
                        ready = false;
                    }
                }
                _ = tokio::time::sleep_until(due.unwrap_or(last)), if due.is_some() && !ready => {
                    ready = true;
                }
                _ = out.closed() => return,
            }
        }
    }

    /// Adds the paths `event` changes to `batch`, and follows folders that appear or disappear;
    /// returns whether the event concerned a target.
    fn on_event(
        &mut self,
        event: &Event,
        batch: &mut BTreeSet<PathBuf>,
        failures: &mut VecDeque<String>,
    ) -> bool {
        if event.need_rescan() {
            // The kernel's queue overflowed: anything may have changed.
            tracing::warn!("inotify's event queue overflowed; treating every plugin as changed");
            batch.extend(self.targets.iter().map(|t| t.report.clone()));
            return true;
        }
        if !is_relevant(&event.kind) {
            return false;
        }
        let mut matched = false;
        let gone = matches!(
            event.kind,
            EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
        );
        let mut rearm = BTreeSet::new();
        for path in &event.paths {
            // A watched folder itself was removed or renamed: every target watched there is
            // placed again (its home may still exist, or exist again, or not).
            if gone && self.watched.contains_key(path) {
                let _ = self.inner.unwatch(path);
                self.watched.remove(path);
                for (i, t) in self.targets.iter_mut().enumerate() {
                    if t.at.as_deref() == Some(path) {
                        t.at = None;
                        rearm.insert(i);
                        matched = true;
                        if t.home == *path {
                            batch.insert(t.report.clone());
                        }
                    }
                }
            }
            let Some(parent) = path.parent() else {
                continue;
            };
            for (i, t) in self.targets.iter().enumerate() {
                if t.at.as_deref() != Some(parent) {
                    continue;
                }
                if t.home != parent {
                    // Watching a parent of a missing folder: did a step towards it appear?
                    if t.home.starts_with(path) {
                        rearm.insert(i);
                    }
                } else if let Some(name) = &t.name {
                    if path.file_name() == Some(name.as_os_str()) {
                        batch.insert(t.report.clone());
                        matched = true;
                    }
                } else if !is_noise(path) {
                    batch.insert(path.clone());
                    matched = true;
                }
            }
        }
        for i in rearm {
            let was_home = self.targets[i].at.as_ref() == Some(&self.targets[i].home);
            if let Err(message) = self.arm(i) {
                failures.push_back(message);
            }
            let t = &self.targets[i];
            if !was_home && t.at.as_ref() == Some(&t.home) {
                tracing::info!("`{}` exists now and is watched", t.home.display());
                batch.insert(t.report.clone());
                matched = true;
            }
        }
        matched
    }

    /// Watches `home` for target `i`, or its nearest existing parent while it is missing. Errors
    /// other than inotify's limits skip the target with a warning; a limit is returned as the
    /// message to report.
    fn arm(&mut self, i: usize) -> Result<(), String> {
        let home = self.targets[i].home.clone();
        // A step towards `home` may be created between looking and watching, unseen: look again
        // once the watch is in place, and move closer while it is so.
        loop {
            let Some(folder) = home.ancestors().find(|a| a.is_dir()).map(Path::to_path_buf) else {
                tracing::warn!(
                    "cannot watch `{}`: neither it nor any parent folder exists\nhint: create the folder",
                    home.display()
                );
                return Ok(());
            };
            if self.targets[i].at.as_ref() == Some(&folder) {
                return Ok(());
            }
            if let Some(old) = self.targets[i].at.take() {
                self.release(&old);
            }
            if folder != home {
                tracing::warn!(
                    "`{}` does not exist; watching `{}` until it appears\nhint: create it, or remove it from the configuration",
                    home.display(),
                    folder.display()
                );
            }
            if let Some(count) = self.watched.get_mut(&folder) {
                *count += 1;
            } else {
                match self.inner.watch(&folder, RecursiveMode::NonRecursive) {
                    Ok(()) => {
                        self.watched.insert(folder.clone(), 1);
                    }
                    Err(e) if is_limit(&e) => return Err(describe(&e, Some(&folder))),
                    Err(e) => {
                        tracing::warn!(
                            "{}; changes to `{}` are not noticed",
                            describe(&e, Some(&folder)),
                            self.targets[i].report.display()
                        );
                        return Ok(());
                    }
                }
            }
            self.targets[i].at = Some(folder);
        }
    }

    /// One target less watches `folder`; the last one removes the watch.
    fn release(&mut self, folder: &Path) {
        if let Some(count) = self.watched.get_mut(folder) {
            *count -= 1;
            if *count == 0 {
                self.watched.remove(folder);
                let _ = self.inner.unwatch(folder);
            }
        }
    }
}

/// Whether an event of this kind can change what a plugin runs. Opening, reading and closing a
/// file unwritten cannot (and a plugin's start does all three to its executable).
fn is_relevant(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// `path` made absolute (against the working directory) and lexically tidy, so that the paths in
/// events, built by joining names to it, compare equal to it.
fn clean(path: &Path) -> PathBuf {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .components()
        .collect()
}

/// Where a symlinked executable really is, when that is another folder or name.
fn symlink_target(path: &Path) -> Option<PathBuf> {
    if !std::fs::symlink_metadata(path)
        .ok()?
        .file_type()
        .is_symlink()
    {
        return None;
    }
    let real = std::fs::canonicalize(path).ok()?;
    (real != path).then_some(real)
}

fn errno(e: &::notify::Error) -> Option<Errno> {
    match &e.kind {
        ::notify::ErrorKind::Io(io) => io.raw_os_error().map(Errno::from_raw),
        _ => None,
    }
}

/// Whether `e` is one of inotify's per-user limits (or the kernel out of memory for it): nothing
/// more can be watched until an administrator acts.
fn is_limit(e: &::notify::Error) -> bool {
    matches!(e.kind, ::notify::ErrorKind::MaxFilesWatch)
        || matches!(
            errno(e),
            Some(Errno::ENOSPC | Errno::EMFILE | Errno::ENFILE | Errno::ENOMEM)
        )
}

/// A message for a `notify` error, with what to do about it.
fn describe(e: &::notify::Error, folder: Option<&Path>) -> String {
    const NO_RELOAD: &str = "until then plugins are not reloaded when their files change: restart the daemon to apply a change";
    let what = match folder.or(e.paths.first().map(PathBuf::as_path)) {
        Some(f) => format!("cannot watch `{}`", f.display()),
        None => "cannot watch the plugin files".to_owned(),
    };
    if matches!(e.kind, ::notify::ErrorKind::MaxFilesWatch) || errno(e) == Some(Errno::ENOSPC) {
        return format!(
            "{what}: the limit on inotify watches is reached (fs.inotify.max_user_watches)\nhint: raise fs.inotify.max_user_watches (`sysctl fs.inotify.max_user_watches=524288`, and a file in /etc/sysctl.d/ to keep it); {NO_RELOAD}"
        );
    }
    match errno(e) {
        Some(Errno::EMFILE) => format!(
            "{what}: the limit on inotify instances is reached (fs.inotify.max_user_instances)\nhint: raise fs.inotify.max_user_instances (`sysctl fs.inotify.max_user_instances=1024`, and a file in /etc/sysctl.d/ to keep it), or stop other programs of this user that watch files; {NO_RELOAD}"
        ),
        Some(Errno::ENFILE | Errno::ENOMEM) => format!(
            "{what}: {e}\nhint: the system is out of file handles or kernel memory; {NO_RELOAD}"
        ),
        Some(Errno::EACCES | Errno::EPERM) => format!(
            "{what}: permission denied\nhint: give the daemon's user read permission on the folder"
        ),
        _ if matches!(e.kind, ::notify::ErrorKind::PathNotFound) => {
            format!("{what}: it disappeared\nhint: create it again; it is watched once it exists")
        }
        _ => format!("{what}: {e}\nhint: {NO_RELOAD}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// The longest a test waits for a batch.
    const GUARD: Duration = Duration::from_secs(30);
    const DEBOUNCE: Duration = Duration::from_millis(100);

    /// The next event, failing after [`GUARD`].
    async fn next(rx: &mut mpsc::Receiver<WatchEvent>) -> WatchEvent {
        tokio::time::timeout(GUARD, rx.recv())
            .await
            .expect("an event within the guard")
            .expect("the watcher is running")
    }

    /// The next batch of changed paths.
    async fn batch(rx: &mut mpsc::Receiver<WatchEvent>) -> Vec<PathBuf> {
        match next(rx).await {
            WatchEvent::Changed(paths) => paths,
            WatchEvent::Failed(m) => panic!("the watcher failed: {m}"),
        }
    }

    /// The batch of `path` alone.
    fn one(path: &Path) -> Vec<PathBuf> {
        vec![path.to_path_buf()]
    }

    /// Batches until one contains `path`.
    async fn until_seen(rx: &mut mpsc::Receiver<WatchEvent>, path: &Path) -> Vec<Vec<PathBuf>> {
        let mut seen = Vec::new();
        loop {
            let b = batch(rx).await;
            let found = b.iter().any(|p| p == path);
            seen.push(b);
            if found {
                return seen;
            }
        }
    }

    fn executable(path: &Path, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        fs::write(path, text).expect("write");
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    /// A plugin folder with one plugin, and the two ways of watching that plugin.
    fn setup() -> (tempfile::TempDir, PathBuf, [Targets; 2]) {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = fs::canonicalize(dir.path()).expect("canonical");
        let plugin = root.join("plugin");
        executable(&plugin, "#!/bin/sh\n");
        let by_dir = Targets {
            dirs: vec![root.clone()],
            files: vec![],
        };
        let by_file = Targets {
            dirs: vec![],
            files: one(&plugin),
        };
        (dir, plugin, [by_dir, by_file])
    }

    #[tokio::test]
    async fn in_place_writes_are_reported() {
        let (_dir, plugin, targets) = setup();
        for t in &targets {
            let (_w, mut rx) = Watcher::start(t, DEBOUNCE).expect("watching");
            fs::write(&plugin, "#!/bin/sh\necho v2\n").expect("rewrite");
            assert_eq!(batch(&mut rx).await, one(&plugin), "{t:?}");
        }
    }

    #[tokio::test]
    async fn an_atomic_rename_over_the_file_is_reported_as_the_file() {
        let (_dir, plugin, targets) = setup();
        for t in &targets {
            let (_w, mut rx) = Watcher::start(t, DEBOUNCE).expect("watching");
            let tmp = plugin.with_extension("tmp");
            executable(&tmp, "#!/bin/sh\necho v3\n");
            fs::rename(&tmp, &plugin).expect("rename over");
            assert_eq!(batch(&mut rx).await, one(&plugin), "{t:?}");
            // The watch survives the replaced inode: a second save is seen too.
            let tmp = plugin.parent().expect("folder").join(".plugin.XyZ123");
            executable(&tmp, "#!/bin/sh\necho v4\n");
            fs::rename(&tmp, &plugin).expect("rename over");
            assert_eq!(batch(&mut rx).await, one(&plugin), "{t:?}");
        }
    }

    #[tokio::test]
    async fn new_and_removed_files_are_reported() {
        let (_dir, plugin, targets) = setup();
        for t in &targets {
            let (_w, mut rx) = Watcher::start(t, DEBOUNCE).expect("watching");
            fs::remove_file(&plugin).expect("remove");
            assert_eq!(batch(&mut rx).await, one(&plugin), "removed: {t:?}");
            executable(&plugin, "#!/bin/sh\n");
            assert_eq!(batch(&mut rx).await, one(&plugin), "created: {t:?}");
        }
        let (_w, mut rx) = Watcher::start(&targets[0], DEBOUNCE).expect("watching");
        let other = plugin.with_file_name("another");
        executable(&other, "#!/bin/sh\n");
        assert_eq!(batch(&mut rx).await, [other], "a new plugin in the folder");
    }

    #[tokio::test]
    async fn editor_temporary_files_are_ignored() {
        let (_dir, plugin, targets) = setup();
        let folder = plugin.parent().expect("folder").to_path_buf();
        let (_w, mut rx) = Watcher::start(&targets[0], DEBOUNCE).expect("watching");
        for noise in [".plugin.swp", "plugin~", "4913", "#plugin#", "plugin.bak"] {
            fs::write(folder.join(noise), "x").expect("noise");
        }
        fs::create_dir(folder.join("__pycache__")).expect("mkdir");
        fs::write(&plugin, "#!/bin/sh\necho v2\n").expect("rewrite");
        // Had any of the noise counted, it would be in this batch or an earlier one.
        assert_eq!(batch(&mut rx).await, [plugin]);
    }

    #[tokio::test]
    async fn a_file_target_ignores_the_rest_of_its_folder() {
        let (_dir, plugin, targets) = setup();
        let folder = plugin.parent().expect("folder").to_path_buf();
        let (_w, mut rx) = Watcher::start(&targets[1], DEBOUNCE).expect("watching");
        executable(&folder.join("neighbour"), "#!/bin/sh\n");
        fs::write(folder.join("plugin.log"), "lines").expect("log");
        fs::create_dir(folder.join("sub")).expect("mkdir");
        // Opening and reading the executable (as starting the plugin does) is not a change.
        let _ = fs::read(&plugin).expect("read");
        fs::write(&plugin, "#!/bin/sh\necho v2\n").expect("rewrite");
        assert_eq!(batch(&mut rx).await, [plugin]);
    }

    #[tokio::test]
    async fn a_burst_of_writes_is_one_batch() {
        let (_dir, plugin, _) = setup();
        let sentinel = plugin.with_file_name("sentinel");
        let t = Targets {
            dirs: vec![],
            files: vec![plugin.clone(), sentinel.clone()],
        };
        // A long delay, so that the burst below is surely inside it however loaded the machine.
        let (_w, mut rx) = Watcher::start(&t, Duration::from_secs(2)).expect("watching");
        for i in 0..50 {
            use std::io::Write;
            let mut f = fs::OpenOptions::new()
                .append(true)
                .open(&plugin)
                .expect("open");
            writeln!(f, "# line {i}").expect("append");
        }
        assert_eq!(batch(&mut rx).await, one(&plugin));
        // Only after that batch: were the burst split, its rest would come before the sentinel.
        fs::write(&sentinel, "x").expect("sentinel");
        assert_eq!(batch(&mut rx).await, [sentinel]);
    }

    #[tokio::test]
    async fn a_missing_folder_is_watched_once_it_appears() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = fs::canonicalize(dir.path()).expect("canonical");
        let folder = root.join("later").join("plugins");
        let t = Targets {
            dirs: vec![folder.clone()],
            files: vec![],
        };
        let (_w, mut rx) = Watcher::start(&t, DEBOUNCE).expect("a missing folder is no error");
        fs::create_dir_all(&folder).expect("mkdir");
        until_seen(&mut rx, &folder).await;
        let plugin = folder.join("plugin");
        executable(&plugin, "#!/bin/sh\n");
        until_seen(&mut rx, &plugin).await;

        // Removed and created again: still watched.
        fs::remove_dir_all(&folder).expect("rmdir");
        until_seen(&mut rx, &folder).await;
        fs::create_dir(&folder).expect("mkdir");
        // What is created before the watcher follows is covered by the folder's own report.
        until_seen(&mut rx, &folder).await;
        let again = folder.join("again");
        executable(&again, "#!/bin/sh\n");
        until_seen(&mut rx, &again).await;
    }

    #[tokio::test]
    async fn a_symlinked_executable_is_watched_where_it_points() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = fs::canonicalize(dir.path()).expect("canonical");
        fs::create_dir(root.join("opt")).expect("mkdir");
        fs::create_dir(root.join("bin")).expect("mkdir");
        let real = root.join("opt").join("tool");
        executable(&real, "#!/bin/sh\n");
        let link = root.join("bin").join("tool");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        let t = Targets {
            dirs: vec![],
            files: vec![link.clone()],
        };
        let (_w, mut rx) = Watcher::start(&t, DEBOUNCE).expect("watching");
        fs::write(&real, "#!/bin/sh\necho v2\n").expect("rewrite");
        assert_eq!(batch(&mut rx).await, [link]);
    }

    #[tokio::test]
    async fn dropping_the_watcher_ends_the_stream() {
        let (_dir, _plugin, targets) = setup();
        let (w, mut rx) = Watcher::start(&targets[0], DEBOUNCE).expect("watching");
        drop(w);
        let end = tokio::time::timeout(GUARD, rx.recv()).await.expect("ends");
        assert_eq!(end, None);
    }

    #[test]
    fn editor_temporary_names() {
        for name in [
            ".plugin.py.swp",
            ".#plugin.py",
            "plugin.py~",
            "#plugin.py#",
            "4913",
            "plugin.py.swp",
            "plugin.py.SWO",
            "plugin.tmp",
            "plugin.part",
            "plugin.py.kate-swp",
            "plugin.bak",
            "plugin.dpkg-new",
            ".goutputstream-ABC123",
        ] {
            assert!(is_editor_temp(Path::new(name)), "{name} is temporary");
        }
        for name in [
            "plugin",
            "plugin.py",
            "task_status.py",
            "tmp",
            "#",
            "49130",
            "swp",
            "bakery",
        ] {
            assert!(!is_editor_temp(Path::new(name)), "{name} is a plugin");
        }
    }

    #[test]
    fn limits_say_which_sysctl_to_raise() {
        let watches = ::notify::Error::new(::notify::ErrorKind::MaxFilesWatch)
            .add_path(PathBuf::from("/srv/plugins"));
        assert!(is_limit(&watches));
        let m = describe(&watches, None);
        assert!(
            m.starts_with("cannot watch `/srv/plugins`: the limit on inotify watches is reached"),
            "{m}"
        );
        assert!(
            m.contains("\nhint: raise fs.inotify.max_user_watches"),
            "{m}"
        );
        let instances =
            ::notify::Error::io(std::io::Error::from_raw_os_error(Errno::EMFILE as i32));
        assert!(is_limit(&instances));
        let m = describe(&instances, None);
        assert!(
            m.starts_with("cannot watch the plugin files: the limit on inotify instances"),
            "{m}"
        );
        assert!(
            m.contains("\nhint: raise fs.inotify.max_user_instances"),
            "{m}"
        );
        let denied = ::notify::Error::io(std::io::Error::from_raw_os_error(Errno::EACCES as i32));
        assert!(!is_limit(&denied));
        let m = describe(&denied, Some(Path::new("/srv/private")));
        assert_eq!(
            m,
            "cannot watch `/srv/private`: permission denied\nhint: give the daemon's user read permission on the folder"
        );
    }
}
