//! What this process may do that needs privilege: run plugins as other users. Asked by the
//! configuration's checks (`user =`) and by the launcher.

/// Whether the daemon may run plugins as other users: root, or `CAP_SETUID` and `CAP_SETGID`.
pub fn can_switch_user() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    // CapEff in /proc/self/status: bit 6 is CAP_SETGID, bit 7 CAP_SETUID.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 6) != 0 && caps & (1 << 7) != 0)
}
