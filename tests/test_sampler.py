"""The loader's sampler: one global order per epoch sharded over ranks, and a position that resumes exactly."""

from __future__ import annotations

import io
import itertools
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

from srframe.data import ImageFolder, SeededSampler, SRLoader, loader_from_spec, make_loader
from srframe.errors import DataError
from srframe.recipe import load_recipe

Key = tuple[int, int]


class Keys(Dataset):
    """Hands back the (index, seed) key it was asked for."""

    def __init__(self, length: int):
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: Key) -> dict[str, int]:
        index, seed = key
        return {"index": index, "seed": seed}


def keys(batch: dict[str, torch.Tensor]) -> list[Key]:
    return list(zip(batch["index"].tolist(), batch["seed"].tolist()))


def take(loader: SRLoader, count: int) -> list[list[Key]]:
    """The next ``count`` batches of an endless iteration, as key lists."""
    return [keys(batch) for batch in itertools.islice(loader.endless(), count)]


def legacy_keys(length: int, seed: int, epoch: int, shuffle: bool) -> list[Key]:
    """What SeededSampler gave before sharding: single-rank batches must not change."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(length) if shuffle else np.arange(length)
    return list(zip(order.tolist(), rng.integers(0, 2**63 - 1, size=length).tolist()))


@pytest.mark.parametrize("shuffle", [True, False])
def test_single_rank_keys_are_what_they_were(shuffle):
    sampler = SeededSampler(13, seed=5, shuffle=shuffle)
    assert len(sampler) == 13
    for epoch in range(3):
        sampler.set_epoch(epoch)
        assert list(sampler) == list(sampler) == legacy_keys(13, 5, epoch, shuffle)  # iterating does not advance
    loader = make_loader(Keys(13), batch_size=4, seed=5, shuffle=shuffle)
    assert [key for batch in loader for key in keys(batch)] == legacy_keys(13, 5, 0, shuffle)[:12]
    assert [key for batch in loader for key in keys(batch)] == legacy_keys(13, 5, 1, shuffle)[:12]


@pytest.mark.parametrize(("length", "world_size"), [(10, 2), (11, 2), (10, 3), (12, 4)])
def test_rank_shares_are_disjoint_and_cover_the_epoch(length, world_size):
    epoch = legacy_keys(length, 3, 2, True)
    shares = []
    for rank in range(world_size):
        sampler = SeededSampler(length, 3, rank=rank, world_size=world_size)
        sampler.set_epoch(2)
        shares.append(list(sampler))
        assert len(sampler) == len(shares[-1]) == length // world_size
    taken = [key for share in shares for key in share]
    assert len(set(taken)) == len(taken)  # disjoint
    assert set(taken) == set(epoch[:length - length % world_size])  # the ragged tail is left out
    assert all(share == epoch[rank:length - length % world_size:world_size] for rank, share in enumerate(shares))


@pytest.mark.parametrize("length", [24, 26])
def test_ranks_batches_together_are_the_single_process_batch(length):
    single = make_loader(Keys(length), batch_size=6, seed=1)
    ranks = [make_loader(Keys(length), batch_size=3, seed=1, rank=r, world_size=2) for r in range(2)]
    assert len(single) == len(ranks[0]) == len(ranks[1]) == 4
    for _ in range(2):  # epochs
        whole = [keys(batch) for batch in single]
        parts = [[keys(batch) for batch in loader] for loader in ranks]
        assert len(whole) == len(parts[0]) == len(parts[1]) == 4
        for j, batch in enumerate(whole):
            assert batch[0::2] == parts[0][j] and batch[1::2] == parts[1][j]  # same keys, same per-item seeds
    assert ranks[0].state_dict() == ranks[1].state_dict() == single.state_dict() == {"epoch": 2, "consumed": 0}


def write_png(path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, size=(12, 12, 3), dtype=np.uint8)).save(path)


def test_ranks_patches_together_are_the_single_process_patches(tmp_path):
    for i in range(5):
        write_png(tmp_path / f"{i}.png", i)
    dataset = ImageFolder(tmp_path, scale=2, patch_size=4, repeat=2)
    single = [batch["hr"] for batch in make_loader(dataset, batch_size=4, seed=9)]
    ranks = [[batch["hr"] for batch in make_loader(dataset, batch_size=2, seed=9, rank=r, world_size=2)]
             for r in range(2)]
    assert len(single) == 2
    for j, batch in enumerate(single):
        assert torch.equal(batch[0::2], ranks[0][j]) and torch.equal(batch[1::2], ranks[1][j])


@pytest.mark.parametrize("workers", [0, 2])
def test_a_restored_state_continues_with_the_next_batch(workers):
    # 10 items, batch 3: 3 batches per epoch (the 10th item is dropped); 8 batches span 3 epochs
    reference = take(make_loader(Keys(10), batch_size=3, seed=4), 8)
    assert len({tuple(batch) for batch in reference}) == 8
    for consumed in (1, 3, 5):  # mid-epoch, right after an epoch's last batch, in a later epoch
        loader = make_loader(Keys(10), batch_size=3, seed=4, num_workers=workers)
        assert take(loader, consumed) == reference[:consumed]
        state = loader.state_dict()
        assert state == {"epoch": (consumed - 1) // 3, "consumed": ((consumed - 1) % 3 + 1) * 3}
        resumed = make_loader(Keys(10), batch_size=3, seed=4, num_workers=workers)
        resumed.load_state_dict(state)
        assert take(resumed, 3) == reference[consumed:consumed + 3]
    at_the_start = make_loader(Keys(10), batch_size=3, seed=4, num_workers=workers)
    at_the_start.load_state_dict({"epoch": 1, "consumed": 0})  # the same place as {"epoch": 0, "consumed": 9}
    assert take(at_the_start, 2) == reference[3:5]


def test_ranks_resume_from_the_same_state():
    loaders = [make_loader(Keys(16), batch_size=2, seed=2, rank=r, world_size=2) for r in range(2)]
    single = take(make_loader(Keys(16), batch_size=4, seed=2), 6)
    for loader in loaders:
        take(loader, 3)
    state = loaders[0].state_dict()
    assert state == loaders[1].state_dict() == {"epoch": 0, "consumed": 12}
    resumed = [make_loader(Keys(16), batch_size=2, seed=2, rank=r, world_size=2) for r in range(2)]
    for loader in resumed:
        loader.load_state_dict(state)
    parts = [take(loader, 3) for loader in resumed]
    for j in range(3):
        assert single[3 + j][0::2] == parts[0][j] and single[3 + j][1::2] == parts[1][j]


@pytest.mark.parametrize("workers", [0, 2])
def test_stopping_mid_epoch_and_iterating_again_neither_skips_nor_repeats(workers):
    reference = take(make_loader(Keys(12), batch_size=2, seed=6), 12)  # two epochs of 6 batches
    loader = make_loader(Keys(12), batch_size=2, seed=6, num_workers=workers)
    seen = []
    for i, batch in enumerate(loader):
        seen.append(keys(batch))
        if i == 1:
            break
    assert loader.state_dict() == {"epoch": 0, "consumed": 4}
    seen.append(keys(next(iter(loader))))
    seen += [keys(batch) for batch in loader]  # the rest of epoch 0
    assert loader.state_dict() == {"epoch": 1, "consumed": 0}
    seen += [keys(batch) for batch in loader]  # all of epoch 1
    assert seen == reference


def test_same_batches_with_and_without_workers():
    by_workers = [take(make_loader(Keys(9), batch_size=2, seed=8, num_workers=w, rank=1, world_size=2), 5)
                  for w in (0, 2)]
    assert by_workers[0] == by_workers[1]


def test_a_new_iteration_or_a_loaded_state_ends_the_one_in_progress():
    reference = take(make_loader(Keys(12), batch_size=2, seed=0), 6)
    loader = make_loader(Keys(12), batch_size=2, seed=0)
    first = iter(loader)
    assert keys(next(first)) == reference[0]
    second = iter(loader)
    assert keys(next(second)) == reference[1]
    with pytest.raises(StopIteration):
        next(first)
    endless = loader.endless()
    assert keys(next(endless)) == reference[2]
    loader.load_state_dict({"epoch": 0, "consumed": 8})
    assert keys(next(endless)) == reference[4]


def test_the_state_is_plain_ints():
    loader = make_loader(Keys(10), batch_size=2, seed=0, rank=1, world_size=2)
    take(loader, 2)
    state = loader.state_dict()
    assert state == {"epoch": 0, "consumed": 8} and all(type(value) is int for value in state.values())
    assert json.loads(json.dumps(state)) == state
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    restored = torch.load(buffer, weights_only=True)
    assert restored == state
    again = make_loader(Keys(10), batch_size=2, seed=0, rank=1, world_size=2)
    again.load_state_dict(restored)
    assert take(again, 1) == take(loader, 1)


@pytest.mark.parametrize(("rank", "world_size", "message"), [
    (2, 2, "rank 2 is out of range for world_size 2: ranks go from 0 to 1"),
    (-1, 2, "rank must be a whole number >= 0, got -1"),
    (0, 0, r"world_size \(the number of processes\) must be a whole number >= 1, got 0"),
    (0, 1.5, r"world_size \(the number of processes\) must be a whole number >= 1, got 1.5"),
])
def test_bad_rank_or_world_size(rank, world_size, message):
    with pytest.raises(ValueError, match=message):
        SeededSampler(10, 0, rank=rank, world_size=world_size)
    with pytest.raises(ValueError, match=message):
        make_loader(Keys(10), batch_size=2, rank=rank, world_size=world_size)


def test_too_few_items_for_a_batch_on_each_rank():
    with pytest.raises(DataError, match=r"the dataset has 7 items, fewer than one batch of 4 for each of 2 processes"):
        make_loader(Keys(7), batch_size=4, world_size=2)
    assert len(make_loader(Keys(8), batch_size=4, world_size=2)) == 1


@pytest.mark.parametrize("state", [
    {"epoch": 0}, {"epoch": 0, "consumed": 1, "step": 3}, [0, 1], {"epoch": -1, "consumed": 0},
    {"epoch": 0, "consumed": 2.5}, {"epoch": 0, "consumed": 11},
])
def test_a_bad_state_is_a_data_error(state):
    with pytest.raises(DataError, match="loader state"):
        make_loader(Keys(10), batch_size=2).load_state_dict(state)


RECIPE = """
    scale = 2
    [generator]
    kind = "srresnet"
    num_blocks = 1
    [data.train]
    kind = "image_folder"
    root = "images"
    patch_size = 4
    repeat = 4
    batch_size = BATCH
    num_workers = 0
    [data.val]
    kind = "image_folder"
    root = "images"
    [[stages]]
    name = "mse"
    steps = 1
    losses = [{ kind = "mse" }]
"""


def test_the_recipe_batch_is_the_global_batch(write, tmp_path):
    (tmp_path / "images").mkdir()
    for i in range(3):
        write_png(tmp_path / "images" / f"{i}.png", i)
    spec = load_recipe(write("r.toml", RECIPE.replace("BATCH", "4"))).spec
    single = loader_from_spec(spec.data.train, seed=1)
    ranks = [loader_from_spec(spec.data.train, seed=1, rank=r, world_size=2) for r in range(2)]
    assert single.batch_size == 4 and ranks[0].batch_size == ranks[1].batch_size == 2
    whole, parts = next(iter(single))["hr"], [next(iter(loader))["hr"] for loader in ranks]
    assert torch.equal(whole[0::2], parts[0]) and torch.equal(whole[1::2], parts[1])
    validation = loader_from_spec(spec.data.val, seed=0, rank=1, world_size=2)  # not sharded
    assert [batch["name"] for batch in validation] == [["0"], ["1"], ["2"]]
    bad = load_recipe(write("bad.toml", RECIPE.replace("BATCH", "6"))).spec
    with pytest.raises(DataError, match=r"data.train.batch_size = 6 is the global batch, split evenly over 4 "
                                        r"processes: it must be a multiple of 4 \(e.g. 4 or 8\)"):
        loader_from_spec(bad.data.train, seed=1, rank=0, world_size=4)
