"""The in-process tenancy harness runs each configuration and reports a time per request."""

from __future__ import annotations

import pytest

from bench import tenancy_handler


def test_each_configuration_is_timed_beside_the_first(capsys: pytest.CaptureFixture[str]) -> None:
    assert tenancy_handler.main(["--modes", "plain,full", "--requests", "30", "--rounds", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {"plain", "full"}
    assert float(rows["plain"][1]) > 0 and float(rows["full"][1]) > 0
    assert rows["full"][2].startswith(("+", "-"))  # what full adds to plain
    assert len(rows["full"]) == 5  # median, added, and the two rounds


def test_an_unknown_configuration_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        tenancy_handler.main(["--modes", "plain,nonsense"])
    assert "unknown mode(s): nonsense" in capsys.readouterr().err
