"""A cluster node's root: a hard-link copy of the built chroot where Asterisk
only reads, a real copy where it writes (a tiny fake chroot stands in for it)."""

from __future__ import annotations

import os
from pathlib import Path

from callcontrol.sandbox.cluster import ensure_node_root
from callcontrol.sandbox.layout import MARKER_NAME, SandboxLayout


def fake_base(root: Path) -> SandboxLayout:
    for path, text in {
        "usr/sbin/asterisk": "binary",
        "usr/share/asterisk/sounds/hello.wav": "sound",
        "etc/hosts": "127.0.0.1 localhost\n",
        "var/lib/asterisk/astdb.sqlite3": "db",
        "var/log/asterisk/messages.log": "log",
        "var/cache/apt/pkgcache.bin": "cache",
        "run/callcontrol-sandbox.json": '{"pid": 1}',
        "proc/1/status": "x",
        "srv/callcontrol/media/greeting.wav": "media",
    }.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    (root / MARKER_NAME).write_text("Asterisk 22.10.1\n")
    return SandboxLayout(root)


def inode(path: Path) -> int:
    return os.stat(path).st_ino


def test_read_only_files_are_shared_and_written_folders_are_the_nodes_own(tmp_path: Path) -> None:
    base = fake_base(tmp_path / "asterisk-root")
    node = SandboxLayout(tmp_path / "asterisk-root-node1")
    ensure_node_root(base, node)
    for shared in ("usr/sbin/asterisk", "usr/share/asterisk/sounds/hello.wav",
                   "var/cache/apt/pkgcache.bin"):  # fmt: skip
        assert inode(base.root / shared) == inode(node.root / shared), shared
    for own in ("etc/hosts", "var/lib/asterisk/astdb.sqlite3", "var/log/asterisk/messages.log"):
        assert inode(base.root / own) != inode(node.root / own), own
        assert (node.root / own).read_text() == (base.root / own).read_text()
    assert list((node.root / "proc").iterdir()) == []
    assert list((node.root / "srv").iterdir()) == []
    assert not node.state_file.exists()
    assert node.marker.read_text() == base.marker.read_text()


def test_a_node_root_is_kept_while_the_base_is_the_same_and_remade_after_a_rebuild(
    tmp_path: Path,
) -> None:
    base = fake_base(tmp_path / "asterisk-root")
    node = SandboxLayout(tmp_path / "asterisk-root-node1")
    ensure_node_root(base, node)
    (node.root / "var/log/asterisk/node-only.log").write_text("kept")
    ensure_node_root(base, node)
    assert (node.root / "var/log/asterisk/node-only.log").exists()
    # A rebuilt base has new files (new inodes), even with the same version.
    binary = base.root / "usr/sbin/asterisk"
    binary.unlink()
    binary.write_text("new binary")
    ensure_node_root(base, node)
    assert not (node.root / "var/log/asterisk/node-only.log").exists()
    assert inode(binary) == inode(node.root / "usr/sbin/asterisk")
