"""Shared helpers for Python tests that read ../shared/fixtures."""
import json
import os
import sys

import numpy as np


def shared_dir():
    """Path of shared/, or exit 77 (skip) when absent -- exit 1 under CI=true."""
    d = os.environ.get("K2_SHARED_DIR") or os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared")
    if not os.path.isdir(os.path.join(d, "fixtures")):
        if os.environ.get("CI") == "true":
            print(f"shared fixtures not found at {d} (required under CI)")
            sys.exit(1)
        print(f"SKIP: shared fixtures not found at {d}")
        sys.exit(77)
    return d


def model_path(name):
    return os.path.join(shared_dir(), "fixtures", "models", f"{name}.gguf")


def load_case(golden, name, case):
    """(tokens, rows, logits[len(rows), V]) of fixtures/<golden>/<name>/<case>.*"""
    base = os.path.join(shared_dir(), "fixtures", golden, name, case)
    toks = json.load(open(base + ".tokens.json"))
    rows = json.load(open(base + ".rows.json"))
    lg = np.fromfile(base + ".logits.f32", dtype="<f4").reshape(len(rows), -1)
    return toks, rows, lg


def load_greedy(golden, name):
    return json.load(open(os.path.join(shared_dir(), "fixtures", golden, name, "greedy.json")))


def greedy_ok(got, want, margins, tol=0.005):
    """Ids must agree up to the first step whose golden margin is below tol."""
    for i, w in enumerate(want):
        if i >= len(got):
            return False, f"only {len(got)} ids generated"
        if got[i] != w:
            if min(margins[: i + 1]) < tol:
                return True, ""
            return False, f"step {i}: got {got[i]}, want {w} (margin {margins[i]:.4f})"
        if margins[i] < tol:
            return True, ""
    return True, ""


MODELS = ["f32", "bf16", "q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k", "q3_k_m", "q2_k", "iq4_xs",
          "iq3_xxs", "iq3_s", "iq2_xxs", "iq2_s", "iq1_s", "iq1_m"]
