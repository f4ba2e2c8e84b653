//! Fixtures written by the users' own Python tools (highdicom, pydicom, nibabel): a script run
//! once per test process into a directory of the process's own.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `script DIR` with `python3`, where DIR is a new directory of this process's own under
/// `parent` (the target directory may be shared by concurrent runs); directories of earlier
/// runs older than an hour are removed first. Returns DIR and what the script printed. A
/// missing Python or package is a failure that says what to install (`pip_packages`), never
/// a skip.
pub fn run_fixture_script(parent: &Path, script: &Path, pip_packages: &str) -> (PathBuf, String) {
    for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() > 3600);
        if stale {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let dir = parent.join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the fixtures directory");
    let out = Command::new("python3")
        .arg(script)
        .arg(&dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 ({e}): install Python 3, then `pip install {pip_packages}`")
        });
    assert!(
        out.status.success(),
        "{} failed (if python3 cannot import what it needs: pip install {pip_packages}, or \
         scripts/install-deps.sh):\n{}\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (dir, String::from_utf8_lossy(&out.stdout).into_owned())
}
