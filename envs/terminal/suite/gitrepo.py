"""Build a git repository's ``.git`` folder as plain files, without running git.

Families that start from existing history (revert, find the commit that added a
line) need a repository in their initial files. Objects are written loose and
the index carries zeroed stat data, so git re-hashes the work tree once and sees
it clean.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass

AUTHOR = "Sam Rivera <sam@example.com>"


@dataclass(frozen=True)
class Commit:
    """A snapshot of the whole tree (``path -> text``) with its message and unix time."""

    tree: dict[str, str]
    message: str
    timestamp: int


def _object(kind: str, body: bytes, out: dict[str, bytes]) -> bytes:
    raw = f"{kind} {len(body)}".encode() + b"\0" + body
    digest = hashlib.sha1(raw).hexdigest()
    out[f".git/objects/{digest[:2]}/{digest[2:]}"] = zlib.compress(raw)
    return bytes.fromhex(digest)


def _tree(files: dict[str, bytes], out: dict[str, bytes]) -> bytes:
    """Write the tree of ``files`` (path -> blob id); subfolders become subtrees."""
    entries: dict[str, tuple[bytes, bytes]] = {}
    subdirs: dict[str, dict[str, bytes]] = {}
    for path, blob in files.items():
        head, sep, rest = path.partition("/")
        if sep:
            subdirs.setdefault(head, {})[rest] = blob
        else:
            entries[head] = (b"100644", blob)
    for name, sub in subdirs.items():
        entries[name] = (b"40000", _tree(sub, out))

    # git sorts tree entries as if folder names ended with "/"
    def key(name: str) -> bytes:
        return (name + "/" if entries[name][0] == b"40000" else name).encode()

    body = b"".join(
        entries[n][0] + b" " + n.encode() + b"\0" + entries[n][1] for n in sorted(entries, key=key)
    )
    return _object("tree", body, out)


def _index(blobs: dict[str, bytes]) -> bytes:
    data = b"DIRC" + struct.pack(">II", 2, len(blobs))
    for path in sorted(blobs, key=str.encode):
        name = path.encode()
        entry = struct.pack(">10I", 0, 0, 0, 0, 0, 0, 0o100644, 0, 0, 0)
        entry += blobs[path] + struct.pack(">H", min(len(name), 0xFFF)) + name
        entry += b"\0" * (8 - (len(entry) % 8))
        data += entry
    return data + hashlib.sha1(data).digest()


def build(commits: list[Commit], branch: str = "main") -> tuple[dict[str, bytes], list[str]]:
    """The ``.git`` files of a linear history, and the commit ids oldest first.

    The work tree (the last commit's files) is not included; add it yourself.
    """
    out: dict[str, bytes] = {}
    ids: list[str] = []
    parent: bytes | None = None
    blobs: dict[str, bytes] = {}
    for commit in commits:
        blobs = {p: _object("blob", t.encode(), out) for p, t in commit.tree.items()}
        tree = _tree(blobs, out)
        lines = [f"tree {tree.hex()}"]
        if parent is not None:
            lines.append(f"parent {parent.hex()}")
        stamp = f"{commit.timestamp} +0000"
        lines += [f"author {AUTHOR} {stamp}", f"committer {AUTHOR} {stamp}", ""]
        body = "\n".join(lines) + "\n" + commit.message.rstrip("\n") + "\n"
        parent = _object("commit", body.encode(), out)
        ids.append(parent.hex())
    out[".git/HEAD"] = f"ref: refs/heads/{branch}\n".encode()
    out[".git/config"] = (
        b"[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n"
        b"\tbare = false\n\tlogallrefupdates = true\n"
    )
    out[f".git/refs/heads/{branch}"] = (ids[-1] + "\n").encode()
    out[".git/index"] = _index(blobs)
    return out, ids


def repo_files(commits: list[Commit], prefix: str = "") -> tuple[dict[str, str | bytes], list[str]]:
    """Initial files for a repository at ``prefix`` (e.g. ``"webapp/"``).

    That is its ``.git`` folder plus the work tree of the last commit.
    """
    git, ids = build(commits)
    files: dict[str, str | bytes] = {prefix + p: b for p, b in git.items()}
    files.update({prefix + p: t for p, t in commits[-1].tree.items()})
    return files, ids
