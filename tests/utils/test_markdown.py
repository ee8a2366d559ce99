"""The one Markdown table builder."""

import pytest

from tfrobust.utils import markdown_table


def test_table_formats_cells_and_escapes_pipes():
    text = markdown_table(["name", "value"], [["a|b", 0.123456], ["c", None]], align=["l", "r"])
    assert text.splitlines() == ["| name | value |", "|---|--:|", "| a\\|b | 0.1235 |", "| c | — |"]


def test_empty_cells_are_one_space_wide():
    text = markdown_table(["a", "b", "c"], [["**total**", "", 3]])
    assert text.splitlines()[-1] == "| **total** | | 3 |"


def test_rows_and_align_must_match_the_headers():
    with pytest.raises(ValueError, match="every row must have 2 cells"):
        markdown_table(["a", "b"], [[1]])
    with pytest.raises(ValueError, match="`align` must give one entry per column"):
        markdown_table(["a", "b"], [], align=["l"])
