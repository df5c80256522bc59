"""Turn every notebook with git-style conflict markers (from `copier update`) back into valid notebook JSON: `make export` runs it.

A conflict inside a notebook's JSON breaks the file for Jupyter, nbdev and papermill. nbdev's merge tool (`nbdev-fix`)
rebuilds a valid notebook that keeps both versions of the conflicting cells between marker cells; its marker pattern
wants a one-word label, so copier's labels ("before updating") are joined with a dash first.
"""
import re
import subprocess
import sys
from pathlib import Path

FIX = Path(".venv/bin/nbdev-fix")


def main() -> int:
    conflicted = [p for p in sorted(Path("nbs").rglob("*.ipynb")) if re.search(r"^<<<<<<< ", p.read_text(encoding="utf-8"), re.M)]
    for nb in conflicted:
        text = re.sub(r"^(<{7}|>{7}) (.+)$", lambda m: f"{m[1]} {m[2].strip().replace(' ', '-')}", nb.read_text(encoding="utf-8"), flags=re.M)
        nb.write_text(text, encoding="utf-8")
        if FIX.exists():
            subprocess.run([str(FIX), str(nb), "--noprint"], check=False)
            print(f"conflict in {nb}: both versions are kept as cells between marker cells (`<<<<<<<`, `=======`, `>>>>>>>`); "
                  "keep the right one and delete the others")
        else:
            print(f"conflict in {nb}: run `make install`, then `.venv/bin/nbdev-fix {nb}` to make it a valid notebook again")
    return 0


if __name__ == "__main__":
    sys.exit(main())
