"""A throwaway PostgreSQL server on loopback, in a temporary directory (for the tests and bench/data_load.py)."""
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path


def server_binaries() -> Path | None:
    "The folder with initdb and pg_ctl, or None."
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb")]
    return Path(found[-1]).parent if found[-1] else None


@contextmanager
def temporary_postgres(password: str | None = None):
    """Yield the SQLAlchemy URL of a new PostgreSQL server on 127.0.0.1; stop it and delete its files afterwards.

    Without a password the server trusts local connections; with one it asks for it (scram-sha-256), and the URL holds
    it."""
    bindir = server_binaries()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL server binaries (initdb, pg_ctl) are not installed: apt-get install "
                                "postgresql")
    home = Path(tempfile.mkdtemp(prefix="hp-pg-"))
    as_root = os.geteuid() == 0  # initdb refuses to run as root: run the server as the postgres user
    if as_root: shutil.chown(home, "postgres")
    def run(*cmd):
        cmd = [str(c) for c in cmd]
        return subprocess.run(["runuser", "-u", "postgres", "--", *cmd] if as_root else cmd, check=True,
                              capture_output=True, text=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    if password is None: run(bindir / "initdb", "-D", home / "data", "-A", "trust", "-U", "postgres", "--no-sync")
    else:
        (home / "pw").write_text(password + "\n")
        if as_root: shutil.chown(home / "pw", "postgres")
        run(bindir / "initdb", "-D", home / "data", "-A", "scram-sha-256", "--pwfile", home / "pw", "-U", "postgres",
            "--no-sync")
        (home / "pw").unlink()
    run(bindir / "pg_ctl", "-D", home / "data", "-w", "-l", home / "log", "-o",
        f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    try:
        yield f"postgresql+psycopg://postgres{':' + password if password else ''}@127.0.0.1:{port}/postgres"
    finally:
        run(bindir / "pg_ctl", "-D", home / "data", "-m", "immediate", "stop")
        shutil.rmtree(home, ignore_errors=True)
