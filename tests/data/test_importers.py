import shutil

import pytest

from prodlens.data.folders import import_folders
from prodlens.data.grocery import import_grocery_store, package_classes
from prodlens.errors import BadInputError


@pytest.fixture
def mini_grocery(tmp_path, sample_ds):
    """A GroceryStoreDataset-shaped folder built from bundled real photos."""
    root = tmp_path / "dataset"
    lines, classes = [], []
    for i, c in enumerate(sample_ds.classes.names[:3]):
        classes.append(f"{c},{i},Milk,0,/iconic/{c}_Iconic.jpg,/iconic/{c}_Description.txt")
        src = next(s for s in sample_ds.samples if s.label == c)
        rel = f"train/Packages/Milk/{c}/{c}_001.jpg"
        (root / rel).parent.mkdir(parents=True)
        shutil.copyfile(src.image_path, root / rel)
        lines.append(f"{rel}, {i}, 0")
    (root / "iconic").mkdir()
    (root / "iconic" / f"{sample_ds.classes.names[0]}_Description.txt").write_text("A milk.")
    header = "Class Name (str),Class ID (int),Coarse Class Name (str),Coarse Class ID (int),Iconic Image Path (str),Product Description Path (str)"
    (root / "classes.csv").write_text("\n".join([header, *classes]) + "\n")
    lines += ["train/Packages/Milk/gone.jpg, 0, 0", "train/x.jpg, 99, 3", "garbage"]
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    return root


def test_grocery_import_records_skips(mini_grocery):
    ds = import_grocery_store(mini_grocery)  # val.txt and test.txt missing: fine
    assert len(ds) == 3 and len(ds.classes) == 3
    assert ds.samples[0].id.startswith("train/")
    assert ds.classes[0].description == "A milk." and ds.classes[0].coarse == "Milk"
    reasons = " | ".join(r for _, r in ds.skipped)
    assert "gone.jpg: image file not found" in reasons
    assert "class id 99 not in classes.csv" in reasons
    assert "malformed line 'garbage'" in reasons
    assert package_classes(ds) == sorted(ds.classes.names)


def test_grocery_coarse_and_subset(mini_grocery):
    coarse = import_grocery_store(mini_grocery, coarse=True)
    assert coarse.classes.names == ["Milk"]
    one = import_grocery_store(mini_grocery, classes=[import_grocery_store(mini_grocery).classes.names[1]])
    assert len(one.classes) == 1 and len(one) == 1


def test_grocery_wrong_root(tmp_path):
    with pytest.raises(BadInputError, match="no classes.csv"):
        import_grocery_store(tmp_path)


def test_folders_with_and_without_splits(tmp_path, sample_ds):
    src = sample_ds.samples[0].image_path
    for layout in ("flat", "split"):
        root = tmp_path / layout
        for c in ("Arla", "Oatly"):
            d = root / ("val" if layout == "split" else "") / c
            d.mkdir(parents=True)
            shutil.copyfile(src, d / "p1.jpg")
            (d / "notes.txt").write_text("ignored")
        ds = import_folders(root)
        assert ds.classes.names == ["Arla", "Oatly"] and len(ds) == 2
        assert {s.split for s in ds} == ({"val"} if layout == "split" else {"train"})


def test_folders_empty(tmp_path):
    with pytest.raises(BadInputError, match="no images found"):
        import_folders(tmp_path)


def test_bundled_sample(sample_ds):
    assert len(sample_ds.classes) == 10
    assert all(s.image_path.is_file() for s in sample_ds)
    assert all(c.iconic_image.is_file() and c.description for c in sample_ds.classes)


def test_cli_import_grocery_packages_only(mini_grocery, tmp_path, sample_ds):
    from prodlens.cli import main
    from prodlens.data.manifest import read_dataset

    src = sample_ds.samples[-1].image_path
    rel = "train/Fruit/Apple/Granny-Smith/Granny-Smith_001.jpg"
    (mini_grocery / rel).parent.mkdir(parents=True)
    shutil.copyfile(src, mini_grocery / rel)
    with open(mini_grocery / "classes.csv", "a") as f:
        f.write("Granny-Smith,3,Apple,1,/iconic/x.jpg,/iconic/x.txt\n")
    with open(mini_grocery / "train.txt", "a") as f:
        f.write(f"{rel}, 3, 1\n")
    assert main(["import-grocery", str(mini_grocery), "--out", str(tmp_path / "all"), "--splits", "train"]) == 0
    assert "Granny-Smith" in read_dataset(tmp_path / "all").classes.names
    assert main(["import-grocery", str(mini_grocery), "--out", str(tmp_path / "pk"), "--splits", "train", "--packages"]) == 0
    pk = read_dataset(tmp_path / "pk")
    assert len(pk.classes) == 3 and "Granny-Smith" not in pk.classes.names and len(pk) == 3
