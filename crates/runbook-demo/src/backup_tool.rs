//! A stand-in for the seed's `backup_tool`, installed as a real script on
//! `PATH` so the restore branch of the runbook spawns a real process.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

pub(crate) fn install(bin_dir: &Path, service: SocketAddr) -> std::io::Result<()> {
    std::fs::create_dir_all(bin_dir)?;
    let path = bin_dir.join("backup_tool");
    let mut file = std::fs::File::create(&path)?;
    write!(
        file,
        r#"#!/bin/sh
# Simulated backup_tool for `runbook demo` (service at {service}).
# Usage as in the incident runbook:
#   backup_tool [--data-dir D] [--backup-dir B] list --database NAME
#   backup_tool restore --backup-id ID [--force]
#   backup_tool verify --backup-id ID
#   backup_tool full-backup --database NAME
while [ $# -gt 0 ]; do
  case "$1" in
    --data-dir|--backup-dir) shift 2 ;;
    *) break ;;
  esac
done
cmd="$1"; shift || true
case "$cmd" in
  list)
    echo "bk-20261126-0300 production 2026-11-26T03:00:00Z 12.4GiB"
    echo "bk-20261125-0300 production 2026-11-25T03:00:00Z 12.1GiB"
    ;;
  restore)
    id=""; force=no
    while [ $# -gt 0 ]; do
      case "$1" in
        --backup-id) id="$2"; shift 2 ;;
        --force) force=yes; shift ;;
        *) shift ;;
      esac
    done
    [ -n "$id" ] || {{ echo "backup_tool: --backup-id is required" >&2; exit 2; }}
    [ "$force" = yes ] || {{ echo "backup_tool: refusing to overwrite live data without --force" >&2; exit 3; }}
    echo "restoring $id into production"
    echo "restored 42 segments from $id"
    ;;
  verify)
    echo "backup verified: checksums match"
    ;;
  full-backup)
    echo "bk-$(date -u +%Y%m%d-%H%M) production"
    ;;
  *)
    echo "backup_tool: unknown command '$cmd'" >&2
    exit 2
    ;;
esac
"#
    )?;
    drop(file);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}
