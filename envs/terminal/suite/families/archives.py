"""Archives: tar.gz create and extract members, zip create and unzip."""

from __future__ import annotations

import gzip
import io
import random
import tarfile
import zipfile

from ..content import WORDS, paragraph
from ..plan import Family, TaskPlan, done, plan, py_check, script, verifier

_EPOCH = 1700000000


def _site(rng: random.Random, root: str) -> dict[str, str]:
    files = {
        f"{root}/index.html": f"<html><body><h1>{rng.choice(WORDS).title()}</h1></body></html>\n",
        f"{root}/css/style.css": f"body {{ color: #{rng.randint(0, 0xFFFFFF):06x}; }}\n",
        f"{root}/js/app.js": f"console.log('{rng.choice(WORDS)}');\n",
    }
    for w in rng.sample(WORDS, rng.randint(1, 3)):
        files[f"{root}/pages/{w}.html"] = f"<p>{paragraph(rng, 6)}</p>\n"
    return files


def tar_gz(members: dict[str, str]) -> bytes:
    """A gzipped tarball of ``members`` with fixed times and owners, so it is reproducible."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), _EPOCH, 0o644
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), mtime=_EPOCH)


def zip_bytes(members: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in members.items():
            zf.writestr(zipfile.ZipInfo(name, (2023, 11, 14, 22, 13, 20)), text)
    return buf.getvalue()


def _tar_create(rng: random.Random, index: int) -> TaskPlan:
    root = rng.choice(["site", "public", "www", "static_site"])
    files: dict[str, str | bytes] = dict(_site(rng, root))
    files["notes.txt"] = "remember to back up the site\n"
    out = rng.choice(["backup.tar.gz", f"{root}.tar.gz", "site-backup.tgz"])
    instruction = rng.choice(
        [
            f"Make a gzip-compressed tarball {out} of the {root}/ folder (paths inside should "
            "start "
            f"with {root}/).",
            f"Back up {root}/ into {out} (tar + gzip), keeping the {root}/ prefix in the archive.",
        ]
    )
    test = verifier(
        py_check(
            f"""
import tarfile
with tarfile.open({out!r}, "r:gz") as tar:
    got = {{m.name.removeprefix("./"): tar.extractfile(m).read().decode()
           for m in tar.getmembers() if m.isfile()}}
assert got == {{p: t for p, t in {files!r}.items() if p.startswith({root!r} + "/")}}, sorted(got)
"""
        )
    )
    cmd = rng.choice([f"tar -czf {out} {root}", f"tar czf {out} {root}/"])
    turns = [
        ("Let me see what's in the folder.", f"find {root} -type f | sort"),
        ("Creating the compressed archive.", cmd),
        ("Listing the archive to verify it.", f"tar -tzf {out} | sort"),
        done(rng, f"{out} contains the whole {root}/ folder"),
    ]
    return plan(
        "tar-create", index, instruction, files, test, script(f"tar -czf {out} {root}"), turns
    )


def _tar_extract(rng: random.Random, index: int) -> TaskPlan:
    version = f"{rng.randint(1, 3)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}"
    top = f"release-{version}"
    members = {f"{top}/{p.split('/', 1)[1]}": t for p, t in _site(rng, "x").items()}
    wanted_name = rng.choice(["app.yml", "settings.ini", "database.yml"])
    wanted = f"{top}/config/{wanted_name}"
    members[wanted] = f"env: production\nworkers: {rng.randint(2, 16)}\nversion: {version}\n"
    members[f"{top}/config/defaults.yml"] = "env: development\n"
    members[f"{top}/README.md"] = f"# Release {version}\n"
    archive = rng.choice([f"{top}.tar.gz", "release.tar.gz"])
    files: dict[str, str | bytes] = {archive: tar_gz(members)}
    instruction = rng.choice(
        [
            f"Extract only config/{wanted_name} from {archive} (it's under {top}/ in the archive). "
            "Don't unpack anything else.",
            f"I just need {wanted} out of {archive}; please extract that single file here, "
            "keeping its path.",
        ]
    )
    test = verifier(
        py_check(
            f"""
import os
assert open({wanted!r}).read() == {members[wanted]!r}
found = sorted(os.path.join(d, f) for d, _, fs in os.walk({top!r}) for f in fs)
assert found == [{wanted!r}], found
"""
        )
    )
    turns = [
        ("Let me list the archive members.", f"tar -tzf {archive}"),
        (f"Extracting just {wanted}.", f"tar -xzf {archive} {wanted}"),
        (
            "Checking what was extracted.",
            rng.choice([f"find {top} | sort && cat {wanted}", f"cat {wanted}"]),
        ),
        done(rng, f"{wanted} is extracted and nothing else"),
    ]
    return plan(
        "tar-extract-member",
        index,
        instruction,
        files,
        test,
        script(f"tar -xzf {archive} {wanted}"),
        turns,
    )


def _zip_create(rng: random.Random, index: int) -> TaskPlan:
    folder = rng.choice(["reports", "exports", "monthly"])
    months = rng.sample(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug"], 4)
    files: dict[str, str | bytes] = {}
    for m in months:
        files[f"{folder}/sales_{m}.csv"] = "region,amount\n" + "".join(
            f"{rng.choice(['north', 'south', 'east', 'west'])},{rng.randint(100, 999)}\n"
            for _ in range(3)
        )
    files[f"{folder}/draft_notes.txt"] = "do not send\n"
    files[f"{folder}/chart.png"] = b"\x89PNG\r\n\x1a\n" + bytes(
        rng.randrange(256) for _ in range(40)
    )
    out = rng.choice(["sales.zip", "csv_reports.zip", "to_send.zip"])
    csvs = {p: t for p, t in files.items() if p.endswith(".csv")}
    instruction = rng.choice(
        [
            f"Zip up just the CSV files from {folder}/ into {out} (only the .csv files, nothing "
            "else).",
            f"Create {out} containing all the .csv files in {folder}/; leave out other file types.",
        ]
    )
    test = verifier(
        py_check(
            f"""
import zipfile, os
with zipfile.ZipFile({out!r}) as zf:
    got = {{n: zf.read(n).decode() for n in zf.namelist() if not n.endswith("/")}}
want = {csvs!r}
# accept the files stored with or without the folder prefix
got = {{(n if n in want else os.path.join({folder!r}, n)): t for n, t in got.items()}}
assert got == want, sorted(got)
"""
        )
    )
    cmd = rng.choice(
        [
            f"zip {out} {folder}/*.csv",
            f"cd {folder} && zip ../{out} *.csv && cd ..",
            f"find {folder} -name '*.csv' | sort | zip {out} -@",
        ]
    )
    turns = [
        ("Let me see what's in the folder.", f"ls {folder}"),
        ("Adding only the CSVs to the zip.", cmd),
        ("Checking the archive contents.", f"unzip -Z1 {out}"),
        done(rng, f"{out} holds the {len(csvs)} CSV files"),
    ]
    return plan(
        "zip-create", index, instruction, files, test, script(f"zip -q {out} {folder}/*.csv"), turns
    )


def _unzip(rng: random.Random, index: int) -> TaskPlan:
    archive = rng.choice(["assets.zip", "fonts.zip", "dataset.zip"])
    dest = rng.choice(["vendor", "extracted", "third_party"])
    members = {
        f"{w}/{w2}.txt": f"{paragraph(rng, 5)}\n"
        for w, w2 in zip(rng.sample(WORDS, 3), rng.sample(WORDS, 3), strict=True)
    }
    members["LICENSE"] = "MIT License\n"
    files: dict[str, str | bytes] = {archive: zip_bytes(members)}
    out = rng.choice(["count.txt", "num_files.txt"])
    instruction = rng.choice(
        [
            f"Unpack {archive} into a new folder {dest}/, then write the number of files it "
            f"contained into {out}.",
            f"Extract {archive} to {dest}/ and save how many files came out of it in {out}.",
        ]
    )
    test = verifier(
        py_check(
            f"""
import os
for name, text in {members!r}.items():
    assert open(os.path.join({dest!r}, name)).read() == text, name
assert int(open({out!r}).read().split()[0]) == {len(members)}
"""
        )
    )
    count = rng.choice(
        [f"find {dest} -type f | wc -l > {out}", f"unzip -Z1 {archive} | grep -vc '/$' > {out}"]
    )
    turns = [
        (
            "Let me look inside the archive first.",
            f"unzip -l {archive} | tail -n +2 | awk '{{print $NF}}'",
        ),
        (f"Extracting into {dest}/.", f"unzip -q {archive} -d {dest}"),
        ("Counting the extracted files.", f"{count} && cat {out}"),
        done(rng, f"{archive} is extracted into {dest}/ and {out} says {len(members)}"),
    ]
    return plan(
        "unzip-count",
        index,
        instruction,
        files,
        test,
        script(f"unzip -q {archive} -d {dest}", f"find {dest} -type f | wc -l > {out}"),
        turns,
    )


FAMILIES = [
    Family("tar-create", "create a tar.gz of a folder", _tar_create),
    Family("tar-extract-member", "extract one member of a tarball", _tar_extract),
    Family("zip-create", "zip files selected by extension", _zip_create),
    Family("unzip-count", "unzip into a folder and count its files", _unzip),
]
