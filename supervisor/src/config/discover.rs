//! Plugin discovery: the executables in `plugins.paths` ([`discover`]), the shotgunEvents files in
//! `plugins.legacy_paths` ([`discover_legacy`]), the files passed over for want of the executable
//! bit ([`not_executable`]), and the editor temporaries neither counts ([`is_editor_temp`]).

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A discovered executable's plugin name: its file name without the last extension.
pub fn plugin_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Finds the plugins in `folders`: every regular, executable, non-hidden file directly in each
/// folder (not in sub-folders), folders in the order given, files in ascending byte order of their
/// names. This order is the start order, and the order of `status` and `check`.
pub fn discover(folders: &[PathBuf]) -> Result<Vec<PathBuf>, (PathBuf, std::io::Error)> {
    files_in(folders, |_, path| {
        // An editor's backup (`plugin.py~`) keeps the executable bit and the stem.
        !is_editor_temp(path)
            // `metadata` follows symlinks: a link to an executable is a plugin.
            && std::fs::metadata(path)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// The non-hidden files directly in each of `folders` that `keep` accepts (given the file's name
/// and path): each folder once, in the order given, its files in ascending byte order of their
/// names. A folder that cannot be read is the error.
fn files_in(
    folders: &[PathBuf],
    keep: impl Fn(&str, &Path) -> bool,
) -> Result<Vec<PathBuf>, (PathBuf, std::io::Error)> {
    let mut found = Vec::new();
    let mut seen_folders = BTreeSet::new();
    for folder in folders {
        if !seen_folders.insert(folder) {
            continue;
        }
        let entries = std::fs::read_dir(folder).map_err(|e| (folder.clone(), e))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let path = e.path();
                (!name.starts_with('.') && keep(&name, &path)).then_some(path)
            })
            .collect();
        files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        found.extend(files);
    }
    Ok(found)
}

/// The regular, non-hidden files directly in `folders` that [`discover`] passes over because no
/// one may execute them: most likely a plugin whose `chmod +x` was forgotten.
pub fn not_executable(folders: &[PathBuf]) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = folders
        .iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter_map(|folder| std::fs::read_dir(folder).ok())
        .flat_map(|entries| entries.filter_map(Result::ok))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .filter(|p| !is_editor_temp(p))
        .filter(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 == 0)
        })
        .collect();
    found.sort();
    found
}

/// What to say of a file [`not_executable`] found.
pub fn not_executable_note(path: &Path) -> String {
    format!(
        "`{}` in a plugins folder is not executable, so it is not a plugin\nhint: run `chmod +x {}` to make it one, or move it out of the folder",
        path.display(),
        path.display()
    )
}

/// The shotgunEvents plugin files in `folders`: every `*.py` that is not hidden, not in a
/// subfolder, in ascending name order per folder, folders in the order given.
pub fn discover_legacy(folders: &[PathBuf]) -> Result<Vec<PathBuf>, (PathBuf, std::io::Error)> {
    files_in(folders, |name, path| {
        name.ends_with(".py")
            && name.len() > 3
            && std::fs::metadata(path).is_ok_and(|m| m.is_file())
    })
}

/// Whether `path` names an editor's or a downloader's temporary file, whose changes are not plugin
/// changes:
///
/// - hidden files, `.*` (vim's `.x.swp`, emacs's lock `.#x`, kate's `.x.kate-swp`, gedit's
///   `.goutputstream-*`, rsync's `.x.AbC123`); discovery skips them too;
/// - backups and autosaves: `x~`, `#x#`, `x.bak`;
/// - vim's swap files wherever its `directory` puts them (`x.swp`, `x.swo`, `x.swn`, `x.swx`) and
///   the `4913` it creates to test whether a folder is writable;
/// - partial downloads and copies: `x.tmp`, `x.part`, `x.crdownload`;
/// - dpkg's files in flight: `x.dpkg-new`, `x.dpkg-tmp`, `x.dpkg-old`.
///
/// Extensions are compared without regard to ASCII case.
pub(crate) fn is_editor_temp(path: &Path) -> bool {
    const EXTENSIONS: &[&str] = &[
        "swp",
        "swo",
        "swn",
        "swx",
        "kate-swp",
        "tmp",
        "part",
        "crdownload",
        "bak",
        "dpkg-new",
        "dpkg-tmp",
        "dpkg-old",
    ];
    let Some(name) = path.file_name() else {
        return false;
    };
    let name = name.to_string_lossy();
    if name.starts_with('.') || name.ends_with('~') || name == "4913" {
        return true;
    }
    if name.len() > 1 && name.starts_with('#') && name.ends_with('#') {
        return true;
    }
    name.rsplit_once('.').is_some_and(|(stem, ext)| {
        !stem.is_empty() && EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e))
    })
}
