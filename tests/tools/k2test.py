"""Shared helpers for k2's Python tests: locating the build, shared/ fixtures, skips."""
import os
import sys

SKIP = 77


def shared_dir():
    """Path of shared/; exits 77 (skip) when absent, or fails under CI=true."""
    d = os.environ.get("K2_SHARED_DIR") or os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared")
    if os.path.isdir(d):
        return d
    if os.environ.get("CI") == "true":
        print("FAIL: shared/ fixtures are missing and CI=true", file=sys.stderr)
        sys.exit(1)
    print("SKIP: shared/ fixtures not found (set K2_SHARED_DIR)", file=sys.stderr)
    sys.exit(SKIP)


def k2_bin():
    return os.environ.get("K2_BIN") or os.path.join(build_dir(), "k2")


def build_dir():
    return os.environ.get("K2_BUILD_DIR") or os.path.join(os.path.dirname(__file__), "..", "..", "build")


class Checker:
    """Counts checks; report() prints the summary and exits non-zero on failure."""

    def __init__(self, name):
        self.name = name
        self.checks = 0
        self.failures = 0

    def check(self, cond, msg=""):
        self.checks += 1
        if not cond:
            self.failures += 1
            print(f"CHECK failed: {msg}", file=sys.stderr)
        return cond

    def report(self):
        print(f"{self.name}: {self.checks} checks, {self.failures} failed", file=sys.stderr)
        sys.exit(1 if self.failures else 0)
