"""Tally how the bad inputs of issues 13 and 18 fail on this checkout: clear, traceback or silent
(and, for received files, code executed, leak or unescaped).

Run: python benchmarks/bad_inputs.py            (this checkout)
     PYTHONPATH=/path/to/other/checkout python benchmarks/bad_inputs.py   (another one, for a
     before/after table)
A CLI case is clear when ``main`` exits 2 with one line (argparse's usage errors count), a
traceback when an exception escapes, silent when it exits 0. An API case is clear when it raises
ValueError/FileNotFoundError, a traceback for any other exception, silent when it returns. A
refusal whose message does not say what the case expects counts as "wrong message". A case that
ran code named inside a received file, told something about a file outside the card's folder, or
printed raw control characters counts as "code executed", "leak" or "unescaped" (``Unsafe``).
"""

from __future__ import annotations

import contextlib
import io
import re
import signal
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bad_input_cases import CASES, Lab, Unsafe  # noqa: E402

TIME_LIMIT = 120  # seconds; a case still running then counts as a hang


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang


def classify(kind, run, lab, match) -> str:
    err = io.StringIO()
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIME_LIMIT)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            result = run(lab)
    except Hang:
        return f"hang (> {TIME_LIMIT} s)"
    except Unsafe as unsafe:
        return unsafe.kind.replace(" ", "-")
    except SystemExit as exit_:  # argparse's usage error (exit 2) is a clear refusal
        return (
            _said(err.getvalue(), match)
            if kind == "cli" and exit_.code == 2
            else f"exit {exit_.code}"
        )
    except (ValueError, FileNotFoundError) as error:
        return _said(str(error), match) if kind == "api" else f"traceback ({type(error).__name__})"
    except Exception as error:  # noqa: BLE001  (what we are counting)
        return f"traceback ({type(error).__name__})"
    finally:
        signal.alarm(0)
    if kind == "api":
        return "silent"
    if result == 2 and "Traceback" not in err.getvalue():
        return _said(err.getvalue(), match)
    return "silent" if result == 0 else f"exit {result}"


def _said(message: str, match: str) -> str:
    """A clear refusal, or one that does not say what the case expects."""
    return (
        "clear"
        if re.search(match, message)
        else f"wrong-message ({message.strip().splitlines()[-1][:80] if message.strip() else ''})"
    )


def main() -> None:
    import fairgen

    print(f"fairgen from {Path(fairgen.__file__).parent}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        lab = Lab(Path(folder))
        tally = {"cli": Counter(), "api": Counter()}
        for name, kind, run, match in CASES:
            outcome = classify(kind, run, lab, match)
            tally[kind][outcome.split(" ")[0]] += 1
            print(f"{outcome:24s} {name}", flush=True)
        try:  # issue 18, part B: results that must be right (True), silent wrong before
            from bad_input_cases import RIGHT_CASES
        except ImportError:
            RIGHT_CASES = []
        tally["right"] = Counter()
        for name, check in RIGHT_CASES:
            outcome = classify(
                "api", lambda lab, check=check: _right(check, lab), lab, "wrong result"
            )
            outcome = {"clear": "silent-wrong", "silent": "right"}.get(outcome, outcome)
            tally["right"][outcome.split(" ")[0]] += 1
            print(f"{outcome:24s} {name}", flush=True)
    for kind, counts in tally.items():
        print(
            f"{kind}: {sum(counts.values())} cases: "
            + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        )


def _right(check, lab) -> None:
    """Returns when ``check`` says the result is right; a ValueError (counted as silent-wrong) when
    not."""
    if not check(lab):
        raise ValueError("wrong result")


if __name__ == "__main__":
    main()
