"""Every published test vector recomputed through the compiled library equals the committed
file in sdk/vectors/ (so the library the bindings load computes the same bytes as the core's
own tests)."""

import json
import os
import pathlib

import pytest

import haven

VECTORS = pathlib.Path(
    os.environ.get("HAVEN_VECTORS_DIR", pathlib.Path(__file__).resolve().parents[4] / "sdk" / "vectors")
)


def test_every_vector_set_is_covered():
    names = haven.test_vector_names()
    committed = sorted(p.stem for p in VECTORS.glob("*.json"))
    assert sorted(names) == committed


@pytest.mark.parametrize("name", sorted(p.stem for p in VECTORS.glob("*.json")))
def test_vector_matches_committed_file(name):
    computed = json.loads(haven.compute_test_vector(name))
    committed = json.loads((VECTORS / f"{name}.json").read_text())
    assert computed == committed


def test_unknown_vector_is_a_typed_error():
    with pytest.raises(haven.HavenError.NotFound):
        haven.compute_test_vector("no_such_vectors")
    with pytest.raises(haven.HavenError.NotFound):
        haven.compute_test_vector("")
