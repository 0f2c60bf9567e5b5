"""qtcheck.py — the Python side of tests/testutil.h for the differential test scripts: count checks, print
the failures as they happen and "N passed, N failed" at the end (read by CI), exit non-zero on a failure
(or, with need_one, when nothing was checked)."""
import os
import sys


class Checks:
    def __init__(self):
        self.passed = self.failed = 0

    def __call__(self, cond, what):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print(f"  FAIL {what}")

    def finish(self, need_one=False):
        print(f"{self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed or (need_one and not self.passed) else 0)


def hf_fixtures(arg):
    """the HF fixture root: $QALIGN_FIXTURES or arg, descending into hf/ when given the fixtures folder"""
    root = os.environ.get("QALIGN_FIXTURES", arg)
    return os.path.join(root, "hf") if os.path.isdir(os.path.join(root, "hf")) else root
