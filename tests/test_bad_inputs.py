"""Every bad input of issues 13 and 18 gets a clear error at the boundary: exit code 2 and one line
naming the problem on the command line, a ValueError/FileNotFoundError saying what was expected in
Python. Cases about received files also fail if code ran, a message told about a file outside the
card's folder, or raw control characters reached the terminal (``bad_input_cases.guarded``)."""

import re

import pytest
from bad_input_cases import CASES, Lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    return Lab(tmp_path_factory.mktemp("bad_inputs"))


@pytest.mark.parametrize(("name", "kind", "run", "match"), CASES, ids=[case[0] for case in CASES])
def test_bad_input_fails_clearly(name, kind, run, match, lab, capsys):
    if kind == "cli":
        assert run(lab) == 2, name
        err = capsys.readouterr().err
        assert "Traceback" not in err
        assert re.search(match, err), err[-500:]
    else:
        with pytest.raises((ValueError, FileNotFoundError), match=match):
            run(lab)


# issue 18, part B (i18b): cases whose right answer is not an error, and that gave a silent wrong
# result before
from bad_input_cases import RIGHT_CASES  # noqa: E402


@pytest.mark.parametrize(("name", "check"), RIGHT_CASES, ids=[case[0] for case in RIGHT_CASES])
def test_odd_input_gives_the_right_result(name, check, lab):
    assert check(lab), name
