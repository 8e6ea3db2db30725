"""The safety checks and the PII scrubber read a long text in time linear in its length: serve's banner reads every
earlier user turn of a conversation (up to `--max-history-chars`), and `data prepare` scrubs whatever a row holds.
A pattern such as `\\w+ectomy` retries its `\\w+` at every character of a long word, so one 400,000-character turn
took 15 minutes; anchored at a word start it takes seconds. A hang guard, not a benchmark: the limit is ~10× what
a linear reading takes on a slow machine and far below what a quadratic one takes."""

import subprocess
import sys

from conftest import ROOT

# Long runs of word characters (Latin, digits, CJK) and of short words: what makes an unanchored `\w+` or
# `[A-Za-z0-9…]+` quadratic.
SCRIPT = """
from medqa.text.pii import scrub
from medqa.safety import has_emergency_referral, red_flags, risky_prescription
text = "x" * 40000 + "头" * 40000 + "x1" * 20000 + "a " * 20000 + "after my " * 4000
assert red_flags(text) == [] and not has_emergency_referral(text) and not risky_prescription(text)
assert scrub(text).count("x") == 60000
print("ok")
"""


def test_safety_checks_and_scrubbing_take_linear_time_on_a_long_text():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
