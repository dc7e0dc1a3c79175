"""Small task directories in Harbor's layout, made on the fly for tests."""

from __future__ import annotations

from pathlib import Path


def make_task(
    root: Path,
    name: str = "count-lines",
    *,
    files: dict[str, str] | None = None,
    test_sh: str | None = None,
    toml: str = "",
    instruction: str = "Write the number of lines of data.txt into count.txt.",
) -> Path:
    """A task whose test checks ``count.txt`` holds the line count of ``data.txt``."""
    folder = root / name
    (folder / "environment").mkdir(parents=True)
    (folder / "tests").mkdir()
    (folder / "solution").mkdir()
    (folder / "instruction.md").write_text(instruction)
    (folder / "task.toml").write_text(
        'version = "1.0"\n[verifier]\ntimeout_sec = 30.0\n[environment]\nmemory_mb = 256\n'
        "storage_mb = 64\n" + toml
    )
    for rel, text in (files or {"data.txt": "a\nb\nc\n"}).items():
        path = folder / "environment" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (folder / "tests" / "test.sh").write_text(
        test_sh
        or "#!/bin/bash\nmkdir -p /logs/verifier\n"
        'if [ "$(cat count.txt 2>/dev/null)" = "$(wc -l < data.txt)" ]; then r=1; else r=0; fi\n'
        "echo $r > /logs/verifier/reward.txt\n"
    )
    (folder / "solution" / "solve.sh").write_text("wc -l < data.txt > count.txt\n")
    return folder
