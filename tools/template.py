"""Render the copier template's generated part from this repository, or check that it is in sync.

A generated project holds only its own files and pins the machinery, the nbprod library (lib/), by exact version. What
it shares with the example beyond the library (the locks, the tests of its notebooks and fixtures, CI's workflow,
`pyproject.toml` with the pin) is copied into `template/` from this repository with the
example's package and project names replaced by copier variables. The project part of the template
(`template/nbs/0*.ipynb.jinja`, its job notebook, README, Makefile, tests of the project) is hand-written in
`template/` itself, since a new project starts from a generic skeleton, not from the house-price example.

    python tools/template.py          # write the generated files into template/
    python tools/template.py --check  # exit 1, listing the files that differ (a test runs this)
"""
import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE, PROJECT = "house_prices", "house-prices"

# (source in this repository, destination in template/, rendered with copier variables)
COPIED = [
    (ROOT / "tests/test_notebooks.py", Path("tests/test_notebooks.py.jinja"), True),
    (ROOT / "tests/conftest.py", Path("tests/conftest.py.jinja"), True),
    *[(p, p.relative_to(ROOT), False) for p in sorted((ROOT / "requirements").glob("3.*/*.lock"))],  # a lock per Python
    (ROOT / "requirements/build.in", Path("requirements/build.in"), False),
    (ROOT / ".github/workflows/ci.yml", Path(".github/workflows/ci.yml"), False),
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
            ('"lib/nbprod/**/*.py" = ["E501", "I001"]\n', ''),
            ('extend-exclude = ["template", "runs", "_docs", "_proc", "lib/_docs", "lib/_proc"]', 'extend-exclude = ["runs", "_docs", "_proc"]'),
            ('testpaths = ["lib/tests", "tests"]', 'testpaths = ["tests"]'),
            ('known-local-folder = ["conftest", "pgserver", "toys"]  # the tests\' own helper modules (pgserver, toys: the library\'s)',
             'known-local-folder = ["conftest"]  # the tests\' own helper module'),
            ('(installed from lib/ in this repository)', '(installed as requirements/nbprod.txt says)'),
            ('# import contracts ([tool.importlinter]): the layers of the nbprod library in its repository',
             '# import contracts ([tool.importlinter]), should the package declare layers')]
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


def write(dest_root: Path) -> list[Path]:
    "Write the generated part of the template under `dest_root`; return the relative paths written."
    (dest_root / "pyproject.toml.jinja").write_text(pyproject((ROOT / "pyproject.toml").read_text(encoding="utf-8")), encoding="utf-8")
    out = [Path("pyproject.toml.jinja")]
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
