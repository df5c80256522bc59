"""The example data is shipped unchanged: its sha256 matches the provenance note."""
import re

import pytest
from nbprod.files import sha256_file as file_sha256


def provenance_hashes(readme):
    "File name -> sha256, from the table in data/house-prices/README.md."
    return dict(re.findall(r"^\|\s*(\w+\.csv)\s*\|.*`([0-9a-f]{64})`\s*\|\s*$", readme.read_text(), flags=re.M))


def test_provenance_note_lists_both_files(settings):
    assert set(provenance_hashes(settings.data_dir / "README.md")) == {"train.csv", "test.csv"}


@pytest.mark.parametrize("name", ["train.csv", "test.csv"])
def test_data_file_matches_provenance_sha256(settings, name):
    expected = provenance_hashes(settings.data_dir / "README.md")[name]
    assert file_sha256(settings.data_dir / name) == expected
