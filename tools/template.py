"""Render the copier template's generated part from this repository, or check that it is in sync.

The repository is the template's one hand-edited source of the machinery: `nbs/core/*.ipynb`, the machinery tests, the
locks and `pyproject.toml` are copied into `template/` with the example's package and project names replaced by copier
variables. The project part of the template (`template/nbs/0*.ipynb.jinja`, its job notebook, README, Makefile, tests
of the project, tools) is hand-written in `template/` itself, since a new project starts from a generic skeleton, not
from the house-price example.

    python tools/template.py          # write the generated files into template/
    python tools/template.py --check  # exit 1, listing the files that differ (a test runs this)
"""
import argparse
import filecmp
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE, PROJECT = "house_prices", "house-prices"

# (source in this repository, destination in template/, rendered with copier variables)
COPIED = [
    *[(p, Path("nbs/core") / f"{p.name}.jinja", True) for p in sorted((ROOT / "nbs/core").glob("*.ipynb"))],
    (ROOT / "tests/test_machinery.py", Path("tests/test_machinery.py.jinja"), True),
    (ROOT / "tests/test_notebooks.py", Path("tests/test_notebooks.py.jinja"), True),
    (ROOT / "tests/conftest.py", Path("tests/conftest.py.jinja"), True),
    *[(p, p.relative_to(ROOT), False) for p in sorted((ROOT / "requirements").glob("3.*/*.lock"))],  # a lock per Python
    (ROOT / "requirements/build.in", Path("requirements/build.in"), False),
    (ROOT / ".github/workflows/ci.yml", Path(".github/workflows/ci.yml"), False),
    (ROOT / "Containerfile", Path("Containerfile.jinja"), True),
    (ROOT / "tools/image.py", Path("tools/image.py.jinja"), True),
    (ROOT / "tools/debian_base.sh", Path("tools/debian_base.sh"), False),
]


def pyproject(text: str) -> str:
    "The example's pyproject.toml as the template's: the project's names, no example URL, the schema as package data."
    subs = [('name = "house-prices"', 'name = "{{ project_name }}"'),
            ('description = "Notebook-first research-to-production template: house sale prices from the Ames data"',
             'description = "{{ project_name }}: a notebook-first research-to-production project ({{ task }} of {{ target }})"'),
            ('authors = [{ name = "house-prices template maintainers" }]', 'authors = [{ name = "{{ project_name }} maintainers" }]'),
            ('[project.urls]\nRepository = "https://github.com/house-prices-template/house-prices"\n\n', ''),
            ('house-prices = ', '{{ project_name }} = '), ('house_prices = ', '{{ package_name }} = '),
            ('user = "house-prices-template"', 'user = "{{ project_name }}"'), ('repo = "house-prices"', 'repo = "{{ project_name }}"'),
            ('include = ["house_prices", "house_prices.*"]', 'include = ["house_prices", "house_prices.*"]\n\n[tool.setuptools.package-data]\n'
             '# The reviewed schema of the data (drafted by `make schema`) travels with the package: production loads it too.\n'
             '{{ package_name }} = ["schema.json"]'),
            ('"house_prices/**/*.py" = ["E501", "I001"]\n',
             '"house_prices/**/*.py" = ["E501", "I001"]\n# The machinery is linted in the template\'s repository; here the package\'s name, longer or shorter than the\n'
             '# template\'s, can move a line past the limit or re-wrap an import.\n"nbs/core/*.ipynb" = ["E501", "I001"]\n')]
    for old, new in subs:
        if old not in text: raise ValueError(f"pyproject.toml no longer contains {old!r}: update tools/template.py")
        text = text.replace(old, new)
    return text.replace(PACKAGE, "{{ package_name }}")


def render(text: str) -> str:
    "The text as a copier template: literal everywhere (`{% raw %}`), but for the package and project names."
    body = text.replace(PACKAGE.upper(), "\x00U").replace(PACKAGE, "\x00P").replace(PROJECT, "\x00N")  # HOUSE_PRICES_ROOT, say
    body = body.replace("\x00U", "{% endraw %}{{ package_name | upper }}{% raw %}")
    body = body.replace("\x00P", "{% endraw %}{{ package_name }}{% raw %}").replace("\x00N", "{% endraw %}{{ project_name }}{% raw %}")
    return "{% raw %}" + body + "{% endraw %}"


def vocabulary() -> str:
    """Every word of the machinery (its code and its notebooks' cells, the package's name left out), one per line.

    A generated project's `tests/test_machinery.py` reads it: a column of that project named like a word the template's
    machinery uses anyway ("value", "age" of the toy data) was not put there by the project, so it is not looked for."""
    texts = [p.read_text(encoding="utf-8") for p in sorted((ROOT / PACKAGE / "core").glob("*.py"))]
    texts += ["\n".join("".join(c["source"]) for c in json.loads(p.read_text(encoding="utf-8"))["cells"])
              for p in sorted((ROOT / "nbs/core").glob("*.ipynb"))]
    words = set(re.findall(r"[\w-]+", "\n".join(texts).replace(PACKAGE, "PACKAGE")))
    return "\n".join(sorted(words - {PROJECT})) + "\n"


def write(dest_root: Path) -> list[Path]:
    "Write the generated part of the template under `dest_root`; return the relative paths written."
    (dest_root / "pyproject.toml.jinja").write_text(pyproject((ROOT / "pyproject.toml").read_text(encoding="utf-8")), encoding="utf-8")
    (dest_root / "tests").mkdir(parents=True, exist_ok=True)
    (dest_root / "tests/machinery_words.txt").write_text(vocabulary(), encoding="utf-8")
    out = [Path("pyproject.toml.jinja"), Path("tests/machinery_words.txt")]
    for src, rel, templated in COPIED:
        dest = dest_root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if templated: dest.write_text(render(src.read_text(encoding="utf-8")), encoding="utf-8")
        else: shutil.copy2(src, dest)
        out.append(rel)
    return out


def check(template: Path) -> list[str]:
    "The generated files of `template` that differ from what this repository renders now."
    with tempfile.TemporaryDirectory() as tmp:
        rels = write(Path(tmp))
        return [str(r) for r in rels if not (template / r).is_file() or not filecmp.cmp(Path(tmp) / r, template / r, shallow=False)]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only check that template/ is in sync")
    args = ap.parse_args()
    if args.check:
        stale = check(ROOT / "template")
        if stale:
            print("template/ is out of date with the repository (run `make template`):\n  " + "\n  ".join(stale), file=sys.stderr)
            sys.exit(1)
        print("template/ is in sync")
    else:
        for rel in write(ROOT / "template"): print(f"wrote template/{rel}")
