//! What /proc says about processes: their state, and (for the supervisor) deputy's
//! descendants.

#[cfg(feature = "supervisor")]
use nix::unistd::Pid;

/// A process's state letter (`R`, `S`, `Z`...) and parent pid, from `/proc/<pid>/stat`, or
/// `None` if it does not exist (any more). One read: the file is a few hundred bytes.
pub(crate) fn state_and_parent(pid: u32) -> Option<(char, u32)> {
    let mut buffer = [0u8; 1024];
    let mut file = std::fs::File::open(format!("/proc/{pid}/stat")).ok()?;
    let read = std::io::Read::read(&mut file, &mut buffer).ok()?;
    parse_stat(&buffer[..read])
}

/// Parses `pid (comm) STATE PPID ...`; comm may hold spaces, parentheses and bytes that are
/// not UTF-8, so the fields are counted from its last `)`.
fn parse_stat(stat: &[u8]) -> Option<(char, u32)> {
    let end = stat.iter().rposition(|&byte| byte == b')')?;
    let rest = std::str::from_utf8(&stat[end + 1..]).ok()?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}

#[cfg(feature = "supervisor")]
/// Whether /proc shows this process's own PID namespace: under `unshare --pid` without a
/// new /proc mount it shows the outer one, whose pids would name the wrong processes.
pub(crate) fn proc_is_ours() -> bool {
    std::fs::read_link("/proc/self")
        .ok()
        .and_then(|link| link.to_str()?.parse::<u32>().ok())
        == Some(crate::own_pid())
}

#[cfg(feature = "supervisor")]
/// Whether process `pid` descends from this one: its parents, followed up through /proc,
/// reach this process. `false` where /proc cannot tell.
pub(crate) fn is_descendant(pid: u32) -> bool {
    let own = crate::own_pid();
    if !proc_is_ours() {
        return false;
    }
    let mut at = pid;
    // Bounded: a chain of parents ends at PID 1 (or 0) long before this.
    for _ in 0..256 {
        match state_and_parent(at) {
            Some((_, parent)) if parent == own => return true,
            Some((_, parent)) if parent > 1 => at = parent,
            _ => return false,
        }
    }
    false
}

#[cfg(feature = "supervisor")]
/// Every live (not zombie) descendant of this process, or `None` if /proc cannot tell: it is
/// missing, or it belongs to another PID namespace (`unshare --pid` without a new /proc
/// mount), where its pids would name the wrong processes.
pub(crate) fn descendants() -> Option<Vec<Pid>> {
    let own = crate::own_pid();
    if !proc_is_ours() {
        return None;
    }
    let table: Vec<(u32, u32, bool)> = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let (state, parent) = state_and_parent(pid)?;
            Some((pid, parent, state == 'Z'))
        })
        .collect();
    let mut tree = vec![own];
    let mut live = Vec::new();
    let mut next = 0;
    while let Some(&parent) = tree.get(next) {
        next += 1;
        for &(pid, _, zombie) in table.iter().filter(|(_, ppid, _)| *ppid == parent) {
            tree.push(pid);
            if !zombie {
                live.push(Pid::from_raw(pid as i32));
            }
        }
    }
    Some(live)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        assert_eq!(parse_stat(b"42 (a) b (c) S 7 42 42 0"), Some(('S', 7)));
        assert_eq!(parse_stat(b"42 (sleep) Z 1 0"), Some(('Z', 1)));
        assert_eq!(parse_stat(b"42 (\xff\xfe) R 3 0"), Some(('R', 3)));
        assert_eq!(parse_stat(b"42 (broken"), None);
    }

    #[cfg(feature = "supervisor")]
    #[test]
    fn descendants_are_found_and_leave_out_other_processes() {
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .unwrap();
        let found = descendants().expect("/proc is this namespace's");
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found, vec![Pid::from_raw(child.id() as i32)]);
    }
}
