"""Disk faults for the kiosk's entry log, done for real where the machine allows it.

- Power cuts: with the writer stopped (SIGSTOP), the database, its -wal and its head mark are
  copied as they are (`snapshot`), which is what a power cut leaves when the disk keeps every
  write it acknowledged. The -shm is not copied: it is shared memory, gone after a power cut.
  `tear_wal` then cuts a copy's -wal short, as a disk that acknowledged writes it never kept
  leaves it (the case the head mark exists for).
- Full and read-only disks: a small tmpfs mounted over a test folder (`SmallDisk`), filled with a
  file until the file system says ENOSPC, and remounted read-only and back. Tests run as root,
  so file modes would prove nothing; a mount is what a kiosk meets. Where mounting is not
  allowed, `mount_unavailable()` says why and the tests skip.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
import subprocess
import uuid
from pathlib import Path

from kiosk.door.store import HEAD_MARK_SUFFIX

# Not -shm: a power cut takes the shared-memory index with it; SQLite rebuilds it from the -wal.
POWER_CUT_FILES = ("", "-wal", HEAD_MARK_SUFFIX)


def snapshot(database: Path, into: Path) -> Path:
    """Copy the database's files as they are now into folder `into`; the copy's database path."""
    into.mkdir(parents=True)
    for suffix in POWER_CUT_FILES:
        source = database.with_name(database.name + suffix)
        if source.exists():
            shutil.copyfile(source, into / (database.name + suffix))
    return into / database.name


def tear_wal(database: Path, keep: int) -> int:
    """Cut the -wal of a copy to its first `keep` bytes; returns its length before."""
    wal = database.with_name(database.name + "-wal")
    if not wal.exists():
        return 0
    size = wal.stat().st_size
    with wal.open("r+b") as handle:
        handle.truncate(min(keep, size))
    return size


def integrity(database: Path) -> list[str]:
    """`PRAGMA integrity_check` of a database file, opened as a restarted kiosk would."""
    with contextlib.closing(sqlite3.connect(database)) as db:
        return [str(row[0]) for row in db.execute("PRAGMA integrity_check")]


def mount_unavailable() -> str | None:
    """Why a tmpfs cannot be mounted here (not root, no mount command), or None."""
    if os.geteuid() != 0:
        return "mounting a small tmpfs needs root (the reliability tests run as root in CI)"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "no mount/umount command"
    return None


class SmallDisk:
    """A tmpfs of `size_kib` mounted at `path` for the duration of a `with` block."""

    def __init__(self, path: Path, size_kib: int) -> None:
        self.path = path
        self.size_kib = size_kib
        self.filler = path / f"filler-{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> SmallDisk:
        self.path.mkdir(parents=True, exist_ok=True)
        _mount("-t", "tmpfs", "-o", f"size={self.size_kib}k,mode=0700", "tmpfs", str(self.path))
        return self

    def __exit__(self, *_: object) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.read_write()
        # Lazy: a process killed a moment ago may still hold a file open for a few ms.
        _mount_command("umount", "-l", str(self.path))

    def fill(self) -> int:
        """Write a file until the disk is full; returns the bytes it took."""
        written = 0
        block = b"\0" * 65536
        with self.filler.open("wb", buffering=0) as handle:
            while True:
                try:
                    written += handle.write(block) or 0
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
            # Then byte by byte down to the last one, so not even a small write fits.
            for size in (4096, 512, 1):
                with contextlib.suppress(OSError):
                    while True:
                        written += handle.write(b"\0" * size) or 0
        return written

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def read_only(self) -> None:
        _mount("-o", "remount,ro", str(self.path))

    def read_write(self) -> None:
        _mount("-o", "remount,rw", str(self.path))


class LoopDisk:
    """An ext4 file system in the file `image`, loop-mounted at `path` with errors=remount-ro,
    as a kiosk's SD card or disk is. `fail()` makes the kernel handle a file-system error: it
    turns the mount read-only under the running door, open files and all (which a plain
    `remount,ro` refuses to do while a file is open for writing)."""

    def __init__(self, image: Path, path: Path, size_mib: int = 32) -> None:
        self.image = image
        self.path = path
        self.size_mib = size_mib

    def __enter__(self) -> LoopDisk:
        with self.image.open("wb") as handle:
            handle.truncate(self.size_mib * 1024 * 1024)
        subprocess.run(
            ["mkfs.ext4", "-q", "-F", str(self.image)], check=True, capture_output=True, timeout=60
        )
        self.path.mkdir(parents=True, exist_ok=True)
        self.mount()
        return self

    def __exit__(self, *_: object) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            _mount_command("umount", "-l", str(self.path))

    def mount(self) -> None:
        _mount("-o", "loop,errors=remount-ro", str(self.image), str(self.path))

    def device(self) -> str:
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) > 1 and fields[1] == str(self.path):
                return Path(fields[0]).name
        raise AssertionError(f"{self.path} is not mounted")

    def read_only(self) -> bool:
        """Whether the file system refuses writes (ext4's emergency read-only state is not in
        the mount flags: a write attempt tells)."""
        try:
            os.utime(self.path)
        except OSError as exc:
            return exc.errno == errno.EROFS
        return False

    def fail(self) -> None:
        """A file-system error, as the kernel handles it: the mount turns read-only."""
        Path(f"/sys/fs/ext4/{self.device()}/trigger_fs_error").write_text("kiosk fault test\n")

    def repair(self) -> None:
        """What a technician does: unmount, check the file system, mount it again."""
        _mount_command("umount", str(self.path))
        # e2fsck exits 1 when it fixed something (the error flag): that is the point.
        subprocess.run(["e2fsck", "-fy", str(self.image)], capture_output=True, timeout=60)
        self.mount()


def loop_unavailable() -> str | None:
    """Why an ext4 loop mount cannot be used here, or None."""
    reason = mount_unavailable()
    if reason is not None:
        return reason
    if shutil.which("mkfs.ext4") is None or shutil.which("e2fsck") is None:
        return "no mkfs.ext4/e2fsck (e2fsprogs)"
    if not Path("/dev/loop-control").exists() or not Path("/sys/fs/ext4").is_dir():
        return "no loop devices or no ext4 in this kernel/container"
    return None


def _mount(*args: str) -> None:
    _mount_command("mount", *args)


def _mount_command(command: str, *args: str) -> None:
    subprocess.run([command, *args], check=True, capture_output=True, timeout=30)
