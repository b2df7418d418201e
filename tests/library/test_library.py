"""The scenario library as a whole: the mix of labs it offers, and every lab's start the
same in any process."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter

from kdsim.labs import catalog
from tests.library import labkit

# What the first look at any lab takes: the start-up text, the stack and the analysis.
FIRST_LOOK = ["k", "!analyze -v", "lm"]


def test_the_library_offers_the_promised_mix_of_labs():
    labs, errors = catalog.labs()
    assert errors == []
    assert len(labs) >= 20
    kinds = Counter(spec.kind for spec in labs)
    assert kinds["crash"] >= 10 and kinds["hang"] >= 5
    assert kinds["leak"] >= 3 and kinds["find"] >= 2
    assert {spec.difficulty for spec in labs} == {"easy", "medium", "hard"}


def first_looks(data_dir: str) -> dict[str, str]:
    labs, _ = catalog.labs()
    return {spec.name: hashlib.sha256(
        labkit.transcript(spec.name, FIRST_LOOK, data_dir).encode()).hexdigest()
        for spec in labs}


def test_every_lab_starts_the_same_in_another_process(tmp_path):
    here = first_looks(str(tmp_path / "here"))
    code = ("import json, sys\nfrom tests.library.test_library import first_looks\n"
            "print(json.dumps(first_looks(sys.argv[1])))\n")
    env = dict(os.environ, PYTHONHASHSEED="4242")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "there")], env=env,
                          capture_output=True, text=True, timeout=600, check=True)
    assert json.loads(done.stdout) == here
