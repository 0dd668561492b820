"""benchmarks/evaluate_table.py: merging re-scored rows into an existing table."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.evaluate_table import merge  # noqa: E402


def test_merge_replaces_rows_of_the_same_name_in_place_and_appends_new_ones():
    """A model scored again replaces its row where it stood; a new model goes at the end; the
    rows the new scoring does not touch stay as they were, in their order."""
    old = [{"name": "floor", "v": 1}, {"name": "biggan", "v": 2}, {"name": "progan", "v": 3}]
    new = [{"name": "biggan", "v": 20}, {"name": "stylegan2", "v": 4}]
    assert merge(old, new) == [{"name": "floor", "v": 1}, {"name": "biggan", "v": 20},
                               {"name": "progan", "v": 3}, {"name": "stylegan2", "v": 4}]
    assert old[1] == {"name": "biggan", "v": 2}  # the input list is not modified


def test_merge_of_the_same_rows_twice_keeps_one_of_each():
    """Appending the references again (no --no-references) must not duplicate them."""
    rows = [{"name": "floor", "v": 1}, {"name": "control", "v": 2}]
    again = [{"name": "floor", "v": 1.5}, {"name": "control", "v": 2.5}]
    assert merge(merge(rows, again), again) == again
    assert merge([], rows) == rows
