//! Finding a step's program (`shell[0]`, such as `sh`) along `PATH` once
//! per run instead of once per spawn.
//!
//! Spawned by name, every step's child walks `PATH` itself with one
//! `execve` per directory until one succeeds: with `sh` in the ninth of
//! eleven entries, eight failed execs per step. The executor looks the name
//! up once per (name, `PATH` value) and spawns the path it found, keeping
//! the name as `argv[0]` so the script sees the same `$0`.
//!
//! The lookup only ever stands in for the child's own search, never
//! changes its result:
//! - a name containing `/` is not looked up (the child runs it as it is);
//! - a `PATH` with an empty or relative entry is left to the child, whose
//!   search depends on its working directory;
//! - a name not found is left to the child, so that "not found" fails the
//!   step exactly as before;
//! - when spawning the found path fails (the file went away, is not
//!   executable by us, is a script without `#!`), the caller spawns by
//!   name as before and [`Programs::give_up`] makes later steps do so too.
//!
//! What the cache cannot see: a program of the same name installed during
//! the run into a directory earlier in `PATH` than the one found is used
//! from the next run on, not by the later steps of this run.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// Most (name, `PATH`) pairs remembered. A run has a few (`bash`, `sh`,
/// a step with its own `PATH`); one whose `PATH` differs at every step
/// forgets the oldest instead of growing.
const MAX_REMEMBERED: usize = 32;

/// One lookup's answer.
#[derive(Debug)]
struct Found {
    program: String,
    path: OsString,
    /// `None`: leave the search to the child.
    found: Option<PathBuf>,
}

/// Where programs were found, shared by every step of a run.
#[derive(Clone, Debug, Default)]
pub(crate) struct Programs {
    // A short list compared byte for byte: hashing a 200-byte PATH at
    // every step cost more than comparing it with the few entries there are.
    found: Arc<Mutex<Vec<Found>>>,
}

impl Programs {
    /// The path to spawn for `program` when the child's `PATH` is `path`,
    /// or `None` to spawn it by name.
    pub(crate) fn resolve(&self, program: &str, path: Option<&OsStr>) -> Option<PathBuf> {
        // Without PATH the C library searches a built-in default; leave
        // that to it, as before.
        let path = path?;
        if program.contains('/') {
            return None;
        }
        let mut remembered = self.found.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = remembered
            .iter()
            .find(|e| e.program == program && e.path == path)
        {
            return entry.found.clone();
        }
        let found = search(program, path);
        remember(&mut remembered, program, path, found.clone());
        found
    }

    /// Spawning what [`Self::resolve`] found failed: from now on `program`
    /// is spawned by name under this `path`.
    pub(crate) fn give_up(&self, program: &str, path: &OsStr) {
        let mut remembered = self.found.lock().unwrap_or_else(PoisonError::into_inner);
        remembered.retain(|e| !(e.program == program && e.path == path));
        remember(&mut remembered, program, path, None);
    }
}

fn remember(remembered: &mut Vec<Found>, program: &str, path: &OsStr, found: Option<PathBuf>) {
    if remembered.len() >= MAX_REMEMBERED {
        remembered.remove(0);
    }
    remembered.push(Found {
        program: program.to_string(),
        path: path.to_os_string(),
        found,
    });
}

/// The first `DIR/program` along `path` that is a regular file with an
/// execute bit, as the child's search would pick; `None` when it is not
/// found or `path` has an entry that is not absolute.
fn search(program: &str, path: &OsStr) -> Option<PathBuf> {
    for dir in path.as_bytes().split(|&b| b == b':') {
        // An empty entry means the working directory, a relative one is
        // relative to it: the child's working directory (the step's
        // `workdir`), which only its own search gets right.
        if dir.first() != Some(&b'/') {
            return None;
        }
        let candidate = Path::new(OsStr::from_bytes(dir)).join(program);
        // The mode bits do not say whether *we* may execute it (another
        // owner's 0744 file); such a file fails to spawn, and the caller
        // then falls back to the child's own search, which skips it.
        let executable = std::fs::metadata(&candidate)
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0);
        if executable {
            return Some(candidate);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn script(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, "#!/bin/sh\necho hi\n").expect("write script");
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    #[test]
    fn finds_the_first_executable_file_along_path() {
        let first = tempfile::tempdir().expect("temp dir");
        let second = tempfile::tempdir().expect("temp dir");
        // Skipped like the child skips them: not executable, a directory.
        script(first.path(), "tool", 0o644);
        fs::create_dir(first.path().join("other")).expect("mkdir");
        let tool = script(second.path(), "tool", 0o755);
        let other = script(second.path(), "other", 0o700);
        let path = OsString::from(format!(
            "{}:{}",
            first.path().display(),
            second.path().display()
        ));
        let programs = Programs::default();
        assert_eq!(programs.resolve("tool", Some(&path)), Some(tool.clone()));
        assert_eq!(programs.resolve("other", Some(&path)), Some(other));
        assert_eq!(programs.resolve("missing", Some(&path)), None);
        // The answer is remembered per PATH value...
        fs::remove_file(&tool).expect("rm");
        assert_eq!(programs.resolve("tool", Some(&path)), Some(tool));
        // ...until spawning it failed.
        programs.give_up("tool", &path);
        assert_eq!(programs.resolve("tool", Some(&path)), None);
    }

    #[test]
    fn leaves_names_with_slashes_relative_paths_and_no_path_to_the_child() {
        let dir = tempfile::tempdir().expect("temp dir");
        script(dir.path(), "tool", 0o755);
        let programs = Programs::default();
        let absolute = dir.path().as_os_str();
        assert_eq!(programs.resolve("./tool", Some(absolute)), None);
        assert_eq!(programs.resolve("tool", None), None);
        for path in [
            format!(":{}", dir.path().display()),
            format!("bin:{}", dir.path().display()),
            String::new(),
        ] {
            assert_eq!(programs.resolve("tool", Some(OsStr::new(&path))), None);
        }
        // A relative entry after the match does not matter.
        let path = format!("{}:bin", dir.path().display());
        assert_eq!(
            programs.resolve("tool", Some(OsStr::new(&path))),
            Some(dir.path().join("tool"))
        );
    }

    #[test]
    fn remembers_a_bounded_number_of_answers() {
        let programs = Programs::default();
        for i in 0..3 * MAX_REMEMBERED {
            let path = format!("/nonexistent/{i}");
            assert_eq!(programs.resolve("sh", Some(OsStr::new(&path))), None);
        }
        let remembered = programs.found.lock().expect("not poisoned");
        assert_eq!(remembered.len(), MAX_REMEMBERED);
    }
}
