"""Few-shot data: the glyphs set, the episode sampler, the container, and the online sets' failure paths."""
import socket
import urllib.request

import numpy as np
import pytest
import torch

from kdlab.data import fewshot_online as online
from kdlab.data import glyphs
from kdlab.data.episodes import EpisodeSampler, Task
from kdlab.data.fewshot_base import SPLITS, FewShotDataset
from kdlab.errors import DatasetUnavailableError, ParameterError

SMALL = dict(image_size=16, samples_per_class=6, max_classes_per_split=6)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    """The real class catalogue (built once per test run; a few seconds)."""
    return glyphs.catalogue(tmp_path_factory.mktemp("catalogue"))


@pytest.fixture(scope="module")
def small_glyphs(tmp_path_factory, catalogue):
    return glyphs.load_glyphs(tmp_path_factory.mktemp("glyphs"), **SMALL)


def numbered_dataset(classes_per_split=(4, 3, 3), samples=5):
    """A tiny dataset whose every pixel holds its image's row number, so an image tells where it came from."""
    total = sum(classes_per_split)
    labels = torch.arange(total).repeat_interleave(samples)
    images = torch.arange(len(labels), dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).contiguous()
    ids = list(range(total))
    cut = np.cumsum(classes_per_split).tolist()
    splits = {"train": ids[:cut[0]], "val": ids[cut[0]:cut[1]], "test": ids[cut[1]:]}
    return FewShotDataset("numbered", images, labels, [f"c{i}" for i in ids], ["a"] * total, splits)


# ---------------------------------------------------------------------------------------------- glyphs


def test_glyphs_shapes_dtypes_and_sizes(small_glyphs):
    data = small_glyphs
    assert data.images.dtype == torch.float32 and data.labels.dtype == torch.int64
    assert data.image_shape == (1, 16, 16)
    assert 0.0 <= float(data.images.min()) and float(data.images.max()) <= 1.0
    assert [len(data.splits[s]) for s in SPLITS] == [6, 6, 6]
    assert torch.bincount(data.labels).tolist() == [6] * 18
    assert float(data.images.mean()) > 0.05  # there is ink, not just noise around zero


def test_ink_level_and_noise_knobs_do_what_they_say(tmp_path):
    faint = glyphs.load_glyphs(tmp_path, image_size=16, samples_per_class=2, max_classes_per_split=2,
                               ink_range=(0.5, 0.5), noise_std=0.0)
    peaks = faint.images.amax(dim=(1, 2, 3))
    assert torch.all(peaks <= 0.5 + 1 / 255) and torch.all(peaks >= 0.4)
    assert float((faint.images == 0).float().mean()) > 0.3  # no noise: the background stays black


def test_full_catalogue_has_the_promised_sizes(catalogue):
    chosen = glyphs.choose_classes(catalogue, glyphs.GlyphConfig())
    sizes = {split: len(rows) for split, rows in chosen.items()}
    assert sizes["train"] >= 500 and sizes["val"] >= 100 and sizes["test"] >= 200, sizes


def test_glyph_splits_are_disjoint_and_by_alphabet(small_glyphs, catalogue):
    data = small_glyphs
    ids = [set(data.splits[s]) for s in SPLITS]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    names = [{data.class_names[c] for c in data.splits[s]} for s in SPLITS]
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    chosen = glyphs.choose_classes(catalogue, glyphs.GlyphConfig())
    alphabets = {s: {catalogue.alphabets[row] for row in chosen[s]} for s in SPLITS}
    for split in SPLITS:
        assert alphabets[split] == set(glyphs.SPLIT_ALPHABETS[split])
        assert {data.alphabets[c] for c in data.splits[split]} <= set(glyphs.SPLIT_ALPHABETS[split])
    assert not (alphabets["train"] & alphabets["test"] or alphabets["train"] & alphabets["val"])


def test_glyphs_are_deterministic_given_the_seed(tmp_path, small_glyphs):
    again = glyphs.load_glyphs(tmp_path / "again", **SMALL)  # a fresh root: rebuilt, not read from a cache
    assert torch.equal(again.images, small_glyphs.images)
    assert again.class_names == small_glyphs.class_names
    other = glyphs.load_glyphs(tmp_path / "other", seed=1, **SMALL)
    assert not torch.equal(other.images, small_glyphs.images)


def test_fewer_samples_are_a_prefix_of_more_samples(tmp_path, small_glyphs):
    fewer = glyphs.load_glyphs(tmp_path, **{**SMALL, "samples_per_class": 3})
    assert fewer.class_names == small_glyphs.class_names
    for class_id in range(len(fewer.class_names)):
        first = small_glyphs.images[small_glyphs.labels == class_id][:3]
        assert torch.equal(fewer.images[fewer.labels == class_id], first)


def test_fewer_classes_are_a_subset_of_more_classes(catalogue):
    few = glyphs.choose_classes(catalogue, glyphs.GlyphConfig(max_classes_per_split=4))
    more = glyphs.choose_classes(catalogue, glyphs.GlyphConfig(max_classes_per_split=9))
    for split in SPLITS:
        assert len(few[split]) == 4 and len(more[split]) == 9
        assert set(few[split]) <= set(more[split])


def test_unicode_base_strips_accents_and_compatibility_forms():
    assert glyphs.unicode_base("é") == "e"
    assert glyphs.unicode_base("ά") == "α"
    assert glyphs.unicode_base("²") == "2"
    assert glyphs.unicode_base("A") == "A"


@pytest.mark.parametrize("dropped, kept, reason", [
    ("\u0391", "A", "pixels"),   # Greek capital Alpha looks like Latin A
    ("\u0410", "A", "pixels"),   # Cyrillic capital A
    ("\u043e", "O", "pixels"),   # Cyrillic small o
    ("o", "O", "pixels"),        # a case pair that differs only in size
    ("0", "O", "pixels"),        # digit zero and letter O
    ("é", "e", "unicode"),       # an accented variant of its base letter
    ("ά", "α", "unicode"),
    ("\u0442", "m", "another split"),   # Cyrillic te (meta-test): italic fonts draw it as Latin m (meta-train)
    ("\u2191", "\ua71b", "another split"),  # the up arrow (meta-test) is the raised up arrow (meta-train), larger
])
def test_lookalikes_are_dropped_in_favour_of_one_class(catalogue, dropped, kept, reason):
    assert ord(dropped) not in catalogue.code_points
    assert ord(kept) in catalogue.code_points
    assert catalogue.dropped[ord(dropped)] == (ord(kept), reason)


def test_distinct_letters_survive_the_lookalike_rule(catalogue):
    for char in "ABEKRabdefgh" + "ДЖЯ" + "ΓΔΩ" + "ԴԵԶ":
        assert ord(char) in catalogue.code_points, char


def test_no_two_kept_classes_share_a_unicode_base(catalogue):
    bases = [glyphs.unicode_base(chr(cp)) for cp in catalogue.code_points]
    assert len(bases) == len(set(bases))


def test_lookalike_distance_is_zero_for_twins_and_infinite_without_shared_styles():
    images = torch.zeros(3, 2, 4)
    images[0, 0] = images[1, 0] = torch.tensor([1.0, 0.0, 1.0, 0.0])
    images[2, 1] = 1.0
    drawn = torch.tensor([[True, False], [True, False], [False, True]])
    distances = glyphs.lookalike_distances(images, drawn)
    assert distances[0, 1] == 0
    assert torch.isinf(distances[0, 2])
    assert torch.isinf(glyphs.closest_style_distances(images, drawn)[0, 2])


def test_closest_style_distance_sees_a_pair_that_is_alike_in_one_style_only():
    images = torch.zeros(2, 2, 4)
    images[:, 0] = torch.tensor([1.0, 1.0, 0.0, 0.0])  # style 0: the same drawing
    images[0, 1] = torch.tensor([1.0, 1.0, 0.0, 0.0])  # style 1: RMS difference 1
    images[1, 1] = torch.tensor([0.0, 0.0, 1.0, 1.0])
    drawn = torch.ones(2, 2, dtype=torch.bool)
    assert glyphs.closest_style_distances(images, drawn)[0, 1] == 0
    assert glyphs.lookalike_distances(images, drawn)[0, 1] == pytest.approx(0.5)


def test_no_cross_split_pair_is_closer_than_the_threshold_in_any_style(catalogue):
    (distance, first, second), = glyphs.nearest_cross_split_pairs(catalogue)
    threshold = glyphs.GlyphConfig().cross_split_threshold
    assert threshold == 0.12
    assert distance >= threshold, (chr(first), chr(second), distance)
    assert glyphs.split_of(chr(first)) != glyphs.split_of(chr(second))


def test_the_cross_split_check_finds_a_planted_look_alike(catalogue):
    """The up arrow put back into meta-test: the check must name it with the raised up arrow, its twin."""
    rows = [catalogue.code_points.index(ord(c)) for c in "\ua71bAД"]
    planted = glyphs.Catalogue([catalogue.code_points[r] for r in rows] + [0x2191],
                               [catalogue.alphabets[r] for r in rows] + ["Arrows"],
                               [catalogue.styles[r] for r in rows] + [glyphs.coverage()[0x2191]], {})
    (distance, first, second), = glyphs.nearest_cross_split_pairs(planted)
    assert {first, second} == {0xA71B, 0x2191} and distance < 0.12


def test_a_corrupt_cache_is_detected_and_rebuilt(tmp_path, capsys, small_glyphs):
    glyphs.load_glyphs(tmp_path, **SMALL)
    (cached,) = [p for p in (tmp_path / "cache").glob("glyphs-*.pt") if "catalogue" not in p.name]
    cached.write_bytes(b"not a torch file")
    rebuilt = glyphs.load_glyphs(tmp_path, **SMALL)
    assert "corrupt" in capsys.readouterr().out
    assert cached.with_name(cached.name + ".corrupt").exists()
    assert torch.equal(rebuilt.images, small_glyphs.images)


@pytest.mark.parametrize("option, value, allowed", [
    ("image_size", 4, "from 8 to 128"),
    ("samples_per_class", 1, "from 2 to 1000"),
    ("max_classes_per_split", 1, "integer >= 2"),
    ("seed", -1, "integer >= 0"),
    ("min_styles", 17, "from 1 to 16"),
    ("rotation_deg", -5, "[0, 180]"),
    ("scale_range", (1.1, 0.9), "low <= high"),
    ("noise_std", 2.0, "[0, 1]"),
    ("cross_split_threshold", -0.1, "[0, 1]"),
    ("ink_range", (0.0, 1.0), "0.1 <= low"),
    ("colour", "red", "image_size"),
])
def test_bad_glyph_options_name_the_option_and_what_is_allowed(tmp_path, option, value, allowed):
    with pytest.raises(ParameterError) as error:
        glyphs.load_glyphs(tmp_path, **{option: value})
    assert f"{option!r}" in str(error.value) or f"{option}=" in str(error.value)
    assert allowed in str(error.value)


def test_fewshot_sets_are_in_the_registry(tmp_path, catalogue):
    from kdlab.data import registry

    assert "glyphs" in registry.available(offline_only=True, kind="fewshot")
    online_sets = set(registry.available(kind="fewshot")) - set(registry.available(offline_only=True))
    assert {"omniglot", "cifar_fs", "fc100", "mini_imagenet"} <= online_sets
    data = registry.load("glyphs", root=tmp_path, **SMALL)
    assert isinstance(data, FewShotDataset) and data.image_shape == (1, 16, 16)


# ---------------------------------------------------------------------------------------------- container


def test_split_view_holds_exactly_the_split_classes():
    data = numbered_dataset()
    view = data.split("val")
    assert view.class_ids == [4, 5, 6]
    assert set(view.labels.tolist()) == {4, 5, 6}
    assert view.local_labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert view.samples_per_class == 5
    assert torch.equal(view.images[:, 0, 0, 0], torch.arange(20, 35, dtype=torch.float32))


def test_overlapping_splits_are_refused():
    data = numbered_dataset()
    with pytest.raises(ValueError, match="both"):
        FewShotDataset("bad", data.images, data.labels, data.class_names, data.alphabets,
                       {"train": [0, 1], "val": [1], "test": [2]})


def test_state_round_trip_and_to():
    data = numbered_dataset()
    data = FewShotDataset(data.name, data.images / 100, data.labels, data.class_names, data.alphabets,
                          data.splits)
    back = FewShotDataset.from_state(data.state()).to("cpu")
    assert torch.allclose(back.images, data.images, atol=1 / 255)
    assert back.splits == data.splits and back.class_names == data.class_names


# ---------------------------------------------------------------------------------------------- episodes


def test_episode_shapes_and_labels():
    sampler = EpisodeSampler(numbered_dataset(), "train", ways=3, shots=2, queries=2, seed=0)
    x_s, y_s, x_q, y_q = sampler.episode(0)
    assert x_s.shape == (6, 1, 2, 2) and x_q.shape == (6, 1, 2, 2)
    assert y_s.tolist() == [0, 0, 1, 1, 2, 2] and y_q.tolist() == [0, 0, 1, 1, 2, 2]
    assert y_s.dtype == torch.int64


def test_episodes_relabel_classes_consistently_and_in_random_order():
    data = numbered_dataset()
    sampler = EpisodeSampler(data, "train", ways=3, shots=2, queries=3, seed=0)
    class_of_row = data.split("train").labels
    first_classes = set()
    for index in range(30):
        x_s, y_s, x_q, y_q = sampler.episode(index)
        rows_s, rows_q = x_s[:, 0, 0, 0].long(), x_q[:, 0, 0, 0].long()
        assert not set(rows_s.tolist()) & set(rows_q.tolist())  # support and query never share an image
        classes = [set(class_of_row[rows_s[y_s == k]].tolist()) | set(class_of_row[rows_q[y_q == k]].tolist())
                   for k in range(3)]
        assert all(len(c) == 1 for c in classes)               # one original class per new label
        assert len(set.union(*classes)) == 3                   # three different classes
        assert set.union(*classes) <= set(data.splits["train"])
        first_classes.add(next(iter(classes[0])))
    assert len(first_classes) >= 3  # label 0 is not always the same class


def test_episodes_are_reproducible_and_depend_only_on_seed_and_index():
    data = numbered_dataset()
    a = EpisodeSampler(data, "test", ways=2, shots=1, queries=2, seed=7)
    b = EpisodeSampler(data, "test", ways=2, shots=1, queries=2, seed=7)
    later = b.episode(5)
    for _ in range(3):
        next(a)
    for got, expected in zip(a.episode(5), later):
        assert torch.equal(got, expected)
    c = EpisodeSampler(data, "test", ways=2, shots=1, queries=2, seed=8)
    assert any(not torch.equal(c.episode(i).x_query, a.episode(i).x_query) for i in range(5))


def test_batch_stacks_the_next_tasks():
    sampler = EpisodeSampler(numbered_dataset(), "train", ways=2, shots=1, queries=1, seed=3)
    batch = sampler.batch(4)
    assert isinstance(batch, Task) and batch.x_support.shape == (4, 2, 1, 2, 2)
    for i in range(4):
        assert torch.equal(batch.x_query[i], sampler.episode(i).x_query)
    assert torch.equal(next(sampler).x_support, sampler.episode(4).x_support)
    sampler.reset()
    assert torch.equal(next(sampler).x_support, sampler.episode(0).x_support)


def test_sampler_to_device_keeps_the_episodes():
    sampler = EpisodeSampler(numbered_dataset(), "train", ways=2, shots=1, queries=1, seed=3)
    before = sampler.episode(2)
    assert sampler.to("cpu") is sampler
    assert torch.equal(sampler.episode(2).x_support, before.x_support)
    assert before.to("cpu").y_query.device.type == "cpu"


def test_glyph_episodes_work_end_to_end(small_glyphs):
    x_s, y_s, x_q, y_q = EpisodeSampler(small_glyphs, "test", 5, 1, 5, seed=0).episode(0)
    assert x_s.shape == (5, 1, 16, 16) and x_q.shape == (25, 1, 16, 16)


@pytest.mark.parametrize("kwargs, name, allowed", [
    (dict(split="test", ways=4), "ways", "from 2 to 3, the number of classes"),
    (dict(split="test", ways=1), "ways", "integer >= 2"),
    (dict(split="test", shots=0), "shots", "integer >= 1"),
    (dict(split="test", queries=0), "queries", "integer >= 1"),
    (dict(split="test", shots=3, queries=3), "shots + queries", "at most 5, the images per class"),
    (dict(split="meta-test"), "split", "one of 'train'"),
    (dict(split="test", seed=-1), "seed", "integer >= 0"),
])
def test_bad_episode_settings_give_one_clear_message(kwargs, name, allowed):
    settings = {"ways": 2, "shots": 1, "queries": 1, "seed": 0, **kwargs}
    with pytest.raises(ParameterError) as error:
        EpisodeSampler(numbered_dataset(), **settings)
    assert error.value.name == name
    assert allowed in str(error.value)


def test_sampler_needs_a_fewshot_dataset():
    with pytest.raises(ParameterError, match="FewShotDataset"):
        EpisodeSampler(torch.zeros(3), "test", 2, 1, 1)


# ---------------------------------------------------------------------------------------------- split files


CIFAR100_CLASSES = sorted("""apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus
butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur
dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster
man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree
plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail
snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip
turtle wardrobe whale willow_tree wolf woman worm""".split())


@pytest.mark.parametrize("name, sizes", [("cifar_fs", (64, 16, 20)), ("fc100", (60, 20, 20)),
                                         ("mini_imagenet", (64, 16, 20))])
def test_split_files_have_the_standard_sizes_and_are_disjoint(name, sizes):
    splits = online.read_split_dir(name)
    assert tuple(len(splits[s]) for s in SPLITS) == sizes
    everything = [c for s in SPLITS for c in splits[s]]
    assert len(set(everything)) == 100
    if name == "mini_imagenet":
        assert all(len(w) == 9 and w.startswith("n") and w[1:].isdigit() for w in everything)
    else:
        assert sorted(everything) == CIFAR100_CLASSES


def test_fc100_is_split_by_whole_superclasses():
    superclass_of = online.cifar100_superclasses()
    assert sorted(superclass_of) == CIFAR100_CLASSES and len(set(superclass_of.values())) == 20
    splits = online.read_split_dir("fc100")
    groups = {s: {superclass_of[c] for c in splits[s]} for s in SPLITS}
    assert [len(groups[s]) for s in SPLITS] == [12, 4, 4]
    assert not (groups["train"] & groups["val"] or groups["train"] & groups["test"] or groups["val"] & groups["test"])


# ---------------------------------------------------------------------------------------------- online sets


def fake_cifar100(name, root, download):
    """Three tiny images per CIFAR-100 class, each filled with its class number."""
    labels = np.repeat(np.arange(100), 3)
    images = np.broadcast_to(labels[:, None, None, None], (300, 32, 32, 3)).astype(np.uint8)
    return images, labels, CIFAR100_CLASSES


@pytest.mark.parametrize("loader, name", [(online.load_cifar_fs, "cifar_fs"), (online.load_fc100, "fc100")])
def test_cifar_sets_follow_their_split_files(monkeypatch, loader, name):
    monkeypatch.setattr(online, "_cifar100", fake_cifar100)
    data = loader()
    splits = online.read_split_dir(name)
    assert data.image_shape == (3, 32, 32)
    for split in SPLITS:
        assert [data.class_names[c] for c in data.splits[split]] == splits[split]
    first_test = data.splits["test"][0]
    pixel = data.images[data.labels == first_test][0, 0, 0, 0] * 255
    assert round(float(pixel)) == CIFAR100_CLASSES.index(data.class_names[first_test])
    assert data.alphabets[first_test] == online.cifar100_superclasses()[data.class_names[first_test]]


def test_omniglot_rotations_are_new_classes_in_the_same_split():
    data = numbered_dataset()
    rotated = online._with_rotations(data)
    assert len(rotated.class_names) == 4 * len(data.class_names)
    assert rotated.splits["test"][:4] == [28, 29, 30, 31]
    image = torch.arange(4.0).view(1, 1, 2, 2)
    data.images[:1] = image
    rotated = online._with_rotations(data)
    assert torch.equal(rotated.images[len(data.labels)], torch.rot90(image[0], 1, dims=(1, 2)))


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network is unreachable (blocked by the test)")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.mark.parametrize("loader, name", [(online.load_omniglot, "omniglot"), (online.load_cifar_fs, "cifar_fs"),
                                          (online.load_fc100, "fc100")])
def test_offline_downloads_fail_with_one_helpful_message(no_network, tmp_path, loader, name):
    with pytest.raises(DatasetUnavailableError) as error:
        loader(root=tmp_path)
    message = str(error.value)
    assert name in message and str(tmp_path / "downloads") in message
    assert "internet" in message and "'glyphs'" in message


def test_missing_files_without_download_fail_with_one_helpful_message(tmp_path):
    with pytest.raises(DatasetUnavailableError, match="glyphs"):
        online.load_cifar_fs(root=tmp_path, download=False)


def test_mini_imagenet_missing_folder_says_where_and_how(tmp_path):
    with pytest.raises(DatasetUnavailableError) as error:
        online.load_mini_imagenet(root=tmp_path)
    message = str(error.value)
    assert str(tmp_path / "downloads" / "mini_imagenet") in message
    assert "100 of its 100 classes" in message and "mini-imagenet-tools" in message and "'glyphs'" in message


def test_mini_imagenet_loads_a_class_folder_layout(tmp_path):
    from PIL import Image

    splits = online.read_split_dir("mini_imagenet")
    for number, wnid in enumerate(c for s in SPLITS for c in splits[s]):
        folder = tmp_path / "mini" / ("train" if number % 2 else "") / wnid
        folder.mkdir(parents=True)
        for k in range(2):
            Image.new("RGB", (12, 10), (number, k, 0)).save(folder / f"{wnid}_{k}.png")
    data = online.load_mini_imagenet(root=tmp_path, folder=tmp_path / "mini", image_size=8, samples_per_class=2)
    assert data.image_shape == (3, 8, 8) and len(data.labels) == 200
    assert [data.class_names[c] for c in data.splits["test"]] == splits["test"]
    assert [len(data.splits[s]) for s in SPLITS] == [64, 16, 20]
