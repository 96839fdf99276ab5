//! What /proc says about processes: their state, and deputy's descendants.

use nix::unistd::Pid;

/// A process's state letter (`R`, `S`, `Z`...) and parent pid, from `/proc/<pid>/stat`, or
/// `None` if it does not exist (any more).
pub(crate) fn state_and_parent(pid: u32) -> Option<(char, u32)> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Parses `pid (comm) STATE PPID ...`; comm may hold spaces and parentheses, so the fields
/// are counted from its last `)`.
fn parse_stat(stat: &str) -> Option<(char, u32)> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}

/// Every live (not zombie) descendant of this process, or `None` if /proc cannot tell: it is
/// missing, or it belongs to another PID namespace (`unshare --pid` without a new /proc
/// mount), where its pids would name the wrong processes.
pub(crate) fn descendants() -> Option<Vec<Pid>> {
    let own = std::process::id();
    let seen_as: u32 = std::fs::read_link("/proc/self")
        .ok()?
        .to_str()?
        .parse()
        .ok()?;
    if seen_as != own {
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
        assert_eq!(parse_stat("42 (a) b (c) S 7 42 42 0"), Some(('S', 7)));
        assert_eq!(parse_stat("42 (sleep) Z 1 0"), Some(('Z', 1)));
        assert_eq!(parse_stat("42 (broken"), None);
    }

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
