"""Where the settings point when a user moves ECOM_HOME."""

from __future__ import annotations

from pathlib import Path

from ecom.settings import Settings
from tests.support import REPO


def test_an_ecom_home_of_its_own_reads_the_checkouts_topics_file(tmp_path: Path) -> None:
    """The README's advice, one ECOM_HOME per cluster, left every command failing with
    `cannot read .../topics.yaml`."""
    assert Settings(home=tmp_path, topics_file=None).topics_path == REPO / "topics.yaml"
    (tmp_path / "topics.yaml").write_text("topics: {}\n")
    assert Settings(home=tmp_path, topics_file=None).topics_path == tmp_path / "topics.yaml", (
        "its own first"
    )
    chosen = tmp_path / "mine.yaml"
    assert Settings(home=tmp_path, topics_file=chosen).topics_path == chosen
