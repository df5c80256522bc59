"""Load + validate + fingerprint a large table, from Parquet and from PostgreSQL: rows/s and peak memory.

    .venv/bin/python bench/data_load.py [--rows 1000000]

The table is train.csv resampled to --rows rows with new Ids. Each measurement runs in a fresh process, so that its
peak resident memory is its own. PostgreSQL: a throwaway server on loopback (needs its binaries: apt-get install
postgresql), filled with COPY. For reference, the same process only reading the Parquet file (pyarrow, no checks)
is timed too. Compare ratios across machines, not seconds.
"""
import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib" / "tests"))

CHILD = """
import json, resource, sys, time
from house_prices.data import fingerprint
from nbprod.sources import load
import pandas as pd
ref, what = sys.argv[1], sys.argv[2]
t = time.perf_counter()
if what == "read-only":
    df = pd.read_parquet(ref); t1 = time.perf_counter() - t; t2 = 0.0
else:
    df = load(ref); t1 = time.perf_counter() - t
    t = time.perf_counter(); fp = fingerprint(df); t2 = time.perf_counter() - t
print(json.dumps(dict(rows=len(df), load_s=t1, fingerprint_s=t2, peak_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))
"""


def measure(ref, what="load"):
    r = subprocess.run([sys.executable, "-c", CHILD, str(ref), what], capture_output=True, text=True)
    if r.returncode: raise RuntimeError(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def show(label, m, ref_rate=None):
    total = m["load_s"] + m["fingerprint_s"]
    rate = m["rows"] / total
    extra = f"   ({ref_rate / rate:4.1f}x the read-only time)" if ref_rate else ""
    print(f"  {label:<34} {m['rows']:>9,} rows  load+validate {m['load_s']:6.1f} s  fingerprint {m['fingerprint_s']:5.1f} s"
          f"  = {rate:9,.0f} rows/s  peak RSS {m['peak_mib']:6.0f} MiB{extra}")
    return rate


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    a = ap.parse_args()
    from nbprod.config import get_settings
    from nbprod.sources import load
    s = get_settings()
    d = Path(tempfile.mkdtemp())
    big = load("data/house-prices/train.csv", s.root).sample(n=a.rows, replace=True, random_state=0)
    big = big.assign(Id=np.arange(1, a.rows + 1)).reset_index(drop=True)
    big.to_parquet(d / "big.parquet")
    print(f"{a.rows:,} rows × {big.shape[1]} columns")
    ref_rate = show("Parquet, read only (reference)", measure(d / "big.parquet", "read-only"))
    show("Parquet", measure(d / "big.parquet"), ref_rate)
    from pgserver import server_binaries, temporary_postgres
    if server_binaries() is None:
        print("  PostgreSQL: skipped, server binaries not installed (apt-get install postgresql)"); return
    import psycopg
    from sqlalchemy import create_engine
    with temporary_postgres() as url:
        eng = create_engine(url)
        big.head(0).to_sql("houses", eng, index=False)
        buf = io.StringIO(); big.to_csv(buf, index=False, header=False); buf.seek(0)
        t = time.perf_counter()
        with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as con, con.cursor() as cur:
            with cur.copy('COPY houses FROM STDIN WITH (FORMAT csv)') as cp:
                while chunk := buf.read(1 << 20): cp.write(chunk)
        print(f"  (PostgreSQL filled with COPY in {time.perf_counter() - t:.1f} s)")
        eng.dispose()
        show("PostgreSQL (SQLAlchemy + psycopg)", measure(f"{url}?table=houses"), ref_rate)


if __name__ == "__main__":
    main()
