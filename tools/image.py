"""Build the prediction service of one run as a container image (`Containerfile`), with Podman or Docker: `make image`.

It stages a small build context (a wheel of the project built from the commit the run was made at, with the version the run
recorded, a wheel of the nbprod library it runs, the runtime lock of the run's Python and the Containerfile at that commit, a
run store of the run alone, promoted to production, a few held-out rows for the smoke test); a run of uncommitted code, or
made outside git, is refused, and so is a checkout at another commit than the run's. It then resolves the base image to its
digest, builds (the signing key and the CA bundle pip trusts, `PIP_CERT` or `REQUESTS_CA_BUNDLE` or `SSL_CERT_FILE`, handed
over as build secrets, never written into a layer), and appends what it built to the run's deployment record
(`<run>/deployments.jsonl`): the image, its id and size, the base image by name and digest, the lock, the project's and the
library's wheels (by sha256, the project's with its commit), the engine, and how the run's held-out predictions agree inside
the image (`numerics`: bit-identical or numerically equivalent, found by the smoke test's `runs verify`).
The base image's Python must be the run's: by default `python:<the run's Python>-slim`; `--base` to choose another
(on a machine without a registry, a local one: see `tools/debian_base.sh`).

    .venv/bin/python tools/image.py [--run RUN] [--base IMAGE] [--image NAME] [--engine podman|docker]
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from nbprod.compare import uncommitted
from nbprod.config import get_settings
from nbprod.manifest import SIGNING_KEY_ENV, CodeVersion, Manifest, signing_key_path
from nbprod.project import get_project
from nbprod.runs import ALIASES, DEFAULT_ALIAS, HELD_OUT, MANIFEST, resolve_run

ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENTS = "deployments.jsonl"  # In the run folder: one line per image built from the run
SMOKE_ROWS = 20  # Held-out rows the build scores before it may finish


class ImageError(RuntimeError):
    "The image cannot be built: said in one sentence."


def engine_command(name: str | None) -> str:
    "The container engine: `name`, else podman, else docker."
    for candidate in ([name] if name else ["podman", "docker"]):
        if path := shutil.which(candidate): return path
    raise ImageError(f"no container engine: {name or 'podman or docker'} is not installed (Debian: apt-get install podman)")


def sh(*cmd, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if r.returncode: raise ImageError(f"{' '.join(map(str, cmd[:3]))} ... failed ({r.returncode}):\n{(r.stderr or r.stdout)[-3000:]}")
    return r


def base_digest(engine: str, base: str) -> str:
    "The base image's digest, pulling it first if it is not here."
    inspect = lambda: subprocess.run([engine, "image", "inspect", "--format", "{{.Digest}}" if "podman" in engine else "{{index .RepoDigests 0}}", base],
                                     capture_output=True, text=True)
    r = inspect()
    if r.returncode:
        sh(engine, "pull", base)
        r = inspect()
    if r.returncode or not r.stdout.strip(): raise ImageError(f"cannot resolve the base image {base} to a digest: {r.stderr.strip()}")
    return r.stdout.strip().split("@")[-1]


def library_wheel(dest: Path) -> Path:
    """A wheel of the nbprod library this project runs, built into `dest`: from `lib/` where the library is made, else
    from what `requirements/nbprod.txt` pins (a generated project). Refused unless it is the version installed here."""
    source = [str(ROOT / "lib")] if (ROOT / "lib/pyproject.toml").is_file() else ["-r", str(ROOT / "requirements/nbprod.txt")]
    sh(sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps", "--no-build-isolation", "-w", str(dest), *source)
    wheels = sorted(dest.glob("nbprod-*.whl"))
    here = metadata.version("nbprod")
    if len(wheels) != 1 or not wheels[0].name.startswith(f"nbprod-{here}-"):
        raise ImageError(f"the nbprod wheel built ({', '.join(w.name for w in wheels) or 'none'}) is not the version installed here ({here}): run make install")
    return wheels[0]


def checkout_at(code: CodeVersion) -> None:
    "Refuse a run whose code is in no commit, or a checkout here at another commit than the run's: the image is built from that commit."
    if objection := uncommitted(code): raise ImageError(f"the image is built from the commit the run was made at, but {objection}")
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    if head != code.git_commit:
        raise ImageError(f"the checkout is at commit {head[:12] or '(none)'}, the run was made at {code.git_commit[:12]}: "
                         f"git checkout {code.git_commit[:12]} (or train a run at this commit), then build again")


def project_wheel(code: CodeVersion, dest: Path) -> Path:
    """A wheel of the project built from the run's commit (`git archive`: nothing uncommitted goes in), with the version the
    run recorded; the commit's files are left in `dest/source` (the Containerfile and the lock are taken from there)."""
    source = dest / "source"
    with tempfile.TemporaryDirectory(prefix="archive-") as d:
        sh("git", "-C", ROOT, "archive", "--format=tar", "-o", Path(d) / "commit.tar", code.git_commit)
        with tarfile.open(Path(d) / "commit.tar") as tar: tar.extractall(source, filter="data")
    env = {**os.environ, "SETUPTOOLS_SCM_PRETEND_VERSION": code.package_version}  # no .git in an archive: the run's version
    sh(sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps", "--no-build-isolation",
       "-w", str(dest / "wheels"), str(source), env=env)
    name = get_project().name.replace("-", "_")
    wheels = sorted((dest / "wheels").glob(f"{name}-*.whl"))
    if len(wheels) != 1: raise ImageError(f"building the project's wheel from commit {code.git_commit[:12]} left {len(wheels)} wheels")
    return wheels[0]


def stage_context(run: Path, python: str, code: CodeVersion, ctx: Path) -> None:
    "The build context: what the image needs and nothing else (no data, no notebooks, no .venv, no other runs)."
    project_wheel(code, ctx)
    lock = ctx / "source" / "requirements" / python / "runtime.lock"
    if not lock.is_file(): raise ImageError(f"no runtime lock for Python {python} at the run's commit: the run's Python is not supported there")
    (ctx / "requirements" / python).mkdir(parents=True)
    shutil.copy2(lock, ctx / "requirements" / python / "runtime.lock")
    shutil.copy2(ctx / "source" / "Containerfile", ctx / "Containerfile")
    shutil.rmtree(ctx / "source")
    library_wheel(ctx / "wheels")
    shutil.copytree(run, ctx / "runs" / run.name, ignore=shutil.ignore_patterns(DEPLOYMENTS))  # a run store of this run alone,
    (ctx / "runs" / ALIASES).write_text(json.dumps({DEFAULT_ALIAS: run.name}) + "\n")     # promoted: what the service takes
    with open(run / HELD_OUT, newline="") as f, open(ctx / "smoke.csv", "w", newline="") as out:
        rows = csv.reader(f)
        w = csv.writer(out)
        for i, row in enumerate(rows):
            if i > SMOKE_ROWS: break
            w.writerow(row)


NUMERICS = "/usr/share/doc/service-numerics.json"  # In the image: how the run's held-out predictions agree there (`runs verify`)


def image_file(engine: str, image: str, path: str) -> str:
    "The text of a file in an image, read without running it: a container is created, the file copied out, the container removed."
    cid = sh(engine, "create", image).stdout.strip()
    try:
        with tempfile.TemporaryDirectory(prefix="image-file-") as d:
            sh(engine, "cp", f"{cid}:{path}", d)
            return (Path(d) / Path(path).name).read_text()
    finally: sh(engine, "rm", cid)


def build(run_ref: str | None, base: str | None, image: str, engine_name: str | None) -> dict:
    "Build the image of run `run_ref`; return its deployment record (also appended to the run's)."
    settings = get_settings()
    run = resolve_run(run_ref, settings.runs_dir)
    m = Manifest.read(run / MANIFEST)
    checkout_at(m.code)
    python = ".".join(m.environment.python.split(".")[:2])
    base = base or f"docker.io/library/python:{python}-slim"
    engine = engine_command(engine_name)
    key_file, made = str(signing_key_path()), None  # $RUN_SIGNING_KEY_FILE, else the user's key file
    if os.environ.get(SIGNING_KEY_ENV):  # a key given in the environment: handed to the build as a secret file, removed after
        fd, made = tempfile.mkstemp(prefix="signing-key-")
        os.write(fd, os.environ[SIGNING_KEY_ENV].encode()); os.close(fd)
        key_file = made
    if not Path(key_file).is_file(): raise ImageError(f"no signing key at {key_file}: the build verifies the run's signature (set RUN_SIGNING_KEY_FILE)")
    cert = next((c for c in (os.environ.get(v) for v in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")) if c and Path(c).is_file()), None)
    digest = base_digest(engine, base)
    tag = f"{image}:{run.name}"
    podman = "podman" in Path(engine).name
    try:
        with tempfile.TemporaryDirectory(prefix="image-context-") as ctx, tempfile.NamedTemporaryFile(prefix="no-cert-") as empty:
            stage_context(run, python, m.code, Path(ctx))
            wheel = lambda prefix: next((Path(ctx) / "wheels").glob(f"{prefix}-*.whl"))
            digest_of = lambda w: hashlib.sha256(w.read_bytes()).hexdigest()
            library = dict(version=metadata.version("nbprod"), wheel=wheel("nbprod").name, sha256=digest_of(wheel("nbprod")))
            own = wheel(get_project().name.replace("-", "_"))
            project = dict(version=m.code.package_version, commit=m.code.git_commit, wheel=own.name, sha256=digest_of(own))
            lock_sha256 = digest_of(Path(ctx) / "requirements" / python / "runtime.lock")  # the commit's lock, which the image installs
            print(f"building {tag} from {base}@{digest[:19]}… with {Path(engine).name}: run {run.name}, Python {python}", flush=True)
            cmd = [engine, "build", *(["--format", "docker"] if podman else []),  # docker format: HEALTHCHECK is kept
                   "--build-arg", f"BASE={base}", "--build-arg", f"BASE_DIGEST={digest}", "--build-arg", f"PYVER={python}",
                   "--build-arg", f"RUN_ID={run.name}", "--secret", f"id=signing_key,src={key_file}",
                   "--secret", f"id=pip_cert,src={cert or empty.name}", "-t", tag, "-f", "Containerfile", "."]
            r = subprocess.run(cmd, cwd=ctx)
            if r.returncode: raise ImageError(f"the image build failed ({r.returncode}): see its output above")
    finally:
        if made: os.unlink(made)
    info = json.loads(sh(engine, "image", "inspect", tag).stdout)[0]
    numerics = json.loads(image_file(engine, tag, NUMERICS))["numerics"]
    record = dict(time=datetime.now(UTC).isoformat(timespec="seconds"), kind="container image", image=tag, image_id=info["Id"],
                  size_bytes=info.get("Size"), base=base, base_digest=digest, python=python,
                  lock=f"{python}/runtime.lock", lock_sha256=lock_sha256,
                  project=project, library=library, engine=sh(engine, "--version").stdout.strip(), numerics=numerics)
    with open(run / DEPLOYMENTS, "a") as f: f.write(json.dumps(record) + "\n")
    return record


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=None, help="Run id, folder or alias (default: the production run, else the newest).")
    ap.add_argument("--base", default=None, help="Base image (default: python:<the run's Python>-slim).")
    ap.add_argument("--image", default=f"{get_project().name}-service", help="Image name; the tag is the run id.")
    ap.add_argument("--engine", default=None, help="podman or docker (default: podman if installed).")
    a = ap.parse_args(argv)
    try: rec = build(a.run, a.base, a.image, a.engine)
    except (ImageError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"built {rec['image']} ({rec['size_bytes'] / 2**20:.0f} MiB) from {rec['base']}@{rec['base_digest']}; recorded in the run's {DEPLOYMENTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
