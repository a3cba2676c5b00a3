"""Photos that show real glass are never pasted around synthetic glass (where they would be labelled background)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gemseg.synthesis.backgrounds import (
    BUNDLED_DIR,
    EXTENDED_DIR,
    BackgroundSource,
    bundled_dirs,
    list_photos,
    read_shows_glass,
)
from gemseg.synthesis.procedural import ProceduralEngine, SynthOptions


def _folder(tmp_path, listed):
    for i, name in enumerate(["a.png", "b.png", "c.png"]):
        Image.fromarray(np.full((40, 60, 3), 60 * (i + 1), np.uint8)).save(tmp_path / name)
    (tmp_path / "shows_glass.txt").write_text("# windows\n" + "".join(f"{n}  # comment\n" for n in listed))
    return tmp_path


def test_listed_photos_are_views_only(tmp_path):
    d = _folder(tmp_path, ["a.png", "c.png"])
    src = BackgroundSource([d], use_bundled=False, photo_prob=1.0)
    rng = np.random.default_rng(0)
    surround = {src.sample(rng, 16, 16, role="surround")[1]["photo"] for _ in range(60)}
    view = {src.sample(rng, 16, 16, role="view")[1]["photo"] for _ in range(60)}
    assert surround == {str(d / "b.png")}
    assert view == {str(d / p) for p in ("a.png", "b.png", "c.png")}


def test_all_listed_falls_back_to_procedural_surround(tmp_path):
    d = _folder(tmp_path, ["a.png", "b.png", "c.png"])
    src = BackgroundSource([d], use_bundled=False, photo_prob=1.0)
    rng = np.random.default_rng(1)
    infos = [src.sample(rng, 16, 16, role="surround")[1] for _ in range(10)]
    assert all(i["source"] == "procedural" for i in infos)


def test_glass_aware_can_be_switched_off(tmp_path):
    d = _folder(tmp_path, ["a.png", "c.png"])
    src = BackgroundSource([d], use_bundled=False, photo_prob=1.0, glass_aware=False)
    rng = np.random.default_rng(2)
    assert len({src.sample(rng, 16, 16, role="surround")[1]["photo"] for _ in range(60)}) == 3
    with pytest.raises(ValueError, match="role"):
        src.sample(rng, 16, 16, role="wall")


@pytest.mark.parametrize("folder", [BUNDLED_DIR, EXTENDED_DIR], ids=["core", "extended"])
def test_bundled_list_names_real_files_and_leaves_a_surround_pool(folder):
    listed = read_shows_glass([folder])
    photos = {str(p.resolve()) for p in list_photos([folder])}
    assert listed and listed <= photos  # no stale names
    assert len(photos - listed) >= 5


def test_every_bundled_photo_has_a_licence_entry():
    for folder in (BUNDLED_DIR, EXTENDED_DIR):
        licences = (folder / "LICENSES.md").read_text(encoding="utf-8")
        for p in list_photos([folder]):
            stem = p.stem
            if stem.startswith("humus_"):  # listed as humus_<Set>_<face>.jpg with every set named
                stem = stem[len("humus_"):].rsplit("_", 1)[0]
            assert stem in licences, f"{p.name} has no entry in {folder.name}/LICENSES.md"


def test_extended_set_adds_photos_and_keeps_the_core_set_as_the_default():
    core = BackgroundSource()
    ext = BackgroundSource(bundled_set="extended")
    core_names = {core.bank.name(i) for i in range(len(core.bank))}
    ext_names = {ext.bank.name(i) for i in range(len(ext.bank))}
    assert bundled_dirs() == [BUNDLED_DIR] and bundled_dirs("extended") == [BUNDLED_DIR, EXTENDED_DIR]
    assert core_names < ext_names and len(ext_names) == len(ext.bank)  # short names stay unique
    assert "/" not in "".join(ext_names)  # bundled photos are named by file name, not by path
    assert len(ext.surround_indices) >= 3 * len(core.surround_indices)
    surround = {ext.bank.name(i) for i in ext.surround_indices}
    assert "humus_Stairs_posz.jpg" in surround and "humus_Tallinn_negx.jpg" not in surround
    with pytest.raises(ValueError, match="bundled_set"):
        bundled_dirs("all")
    engine = ProceduralEngine(SynthOptions(width=64, height=48, bundled_set="extended"))
    assert len(engine.backgrounds.bank) == len(ext.bank)


def test_engine_surround_never_uses_a_listed_photo():
    eng = ProceduralEngine(SynthOptions(width=96, height=72, photo_prob=1.0))
    listed = {p.name for p, g in zip(eng.backgrounds.bank.paths, eng.backgrounds.shows_glass) if g}
    used = set()
    for seed in range(40):
        _, params = eng.sample_scene(np.random.default_rng(seed))
        bg = params["background"]
        if bg["source"] == "photo":
            used.add(bg["photo"])
    assert used and not (used & listed)
    assert "glass_aware_backgrounds" in SynthOptions().to_json()


def test_cli_flag_switches_glass_aware_backgrounds_off(tmp_path):
    import json

    from gemseg.cli.main import main

    for flag, want in (([], True), (["--ignore-shows-glass"], False)):
        out = tmp_path / f"run{len(flag)}"
        assert main(["synth", "-n", "1", "-o", str(out), "--size", "64x48", "-q", "-j", "1", *flag]) == 0
        info = json.loads((out / "synth_info.json").read_text())
        assert info["options"]["glass_aware_backgrounds"] is want


def test_cli_exposes_the_realism_knobs(tmp_path, capsys):
    import json

    from gemseg.cli.main import main

    out = tmp_path / "knobs"
    assert main(["synth", "-n", "1", "-o", str(out), "--size", "64x48", "-q", "-j", "1", "--panel-prob", "0",
                 "--white-wall-prob", "0", "--bright-view-prob", "0", "--degrade-prob", "0"]) == 0
    opts = json.loads((out / "synth_info.json").read_text())["options"]
    assert (opts["panel_prob"], opts["white_wall_prob"], opts["bright_view_prob"], opts["degrade_prob"]) == (0, 0, 0, 0)
    # the default infill renders as the engine before the knob existed: not recorded, so older runs still resume
    assert "infill_prob" not in opts and "infill_style" not in opts
    assert main(["synth", "-n", "1", "-o", str(tmp_path / "mat"), "--size", "64x48", "-q", "-j", "1",
                 "--kinds", "curtain_wall", "--infill-style", "material", "--infill-prob", "1"]) == 0
    opts = json.loads((tmp_path / "mat" / "synth_info.json").read_text())["options"]
    assert (opts["infill_prob"], opts["infill_style"]) == (1.0, "material")
    assert main(["synth", "-n", "1", "-o", str(tmp_path / "bad"), "--degrade-prob", "1.5", "-q"]) == 2
    assert "--degrade-prob 1.5" in capsys.readouterr().err


def test_cli_bundled_set_is_recorded_only_when_extended(tmp_path):
    import json

    from gemseg.cli.main import main
    from gemseg.synthesis.errors import SynthError

    base = ["synth", "-n", "3", "--size", "64x48", "-q", "-j", "1", "--photo-prob", "1"]
    assert main(base + ["-o", str(tmp_path / "core")]) == 0
    assert "bundled_set" not in json.loads((tmp_path / "core" / "synth_info.json").read_text())["options"]
    out = tmp_path / "ext"
    assert main(base + ["-o", str(out), "--bundled-set", "extended"]) == 0
    assert json.loads((out / "synth_info.json").read_text())["options"]["bundled_set"] == "extended"
    # resuming with the other set is refused (the images would come from another pool)
    assert main(base + ["-o", str(out), "--skip-existing"]) == 2
    with pytest.raises(SynthError, match="bundled_set"):
        SynthOptions(bundled_set="everything")
