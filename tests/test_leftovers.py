"""What killed or finished runs leave under a results folder, and `make clean-results`."""

from diffrepro.leftovers import empty_folders, main, remove_empty_folders

RESULTS = {  # file: whether clean-results (without --checkpoints) deletes it
    "models/ddpm/eps/symmetric/model.pt": False,
    "models/ddpm/eps/symmetric/model.part.pt": True,     # atomic_path's temporary of a killed train job
    "samples/ddpm/eps/symmetric/ddpm/50/seed0.part.npz": True,
    "samples/ddpm/eps/symmetric/ddpm/50/seed0.npz": False,
    "metrics/ddpm/eps/seed0.csv.part": True,
    "reference/torch_fidelity_cache/ref-x.pt.sha256.0f3a.tmp": True,
    "reference/torch_fidelity_cache/ref-x.pt": False,
    "checkpoints/ddpm/mu/symmetric.ckpt": False,         # a stopped training's resume point
    "logs/train/ddpm/eps/symmetric.log": False,
}
EMPTY = ["checkpoints/ddpm/eps", "sample_shards/ddpm/eps/symmetric/ddpm/1000/seed0"]


def make_tree(root):
    for name in RESULTS:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x")
    for name in EMPTY:
        (root / name).mkdir(parents=True)
    return root


def remaining(root):
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_clean_results_deletes_unfinished_writes_and_empty_folders_only(tmp_path, capsys):
    root = make_tree(tmp_path / "results" / "quick")
    assert main([str(root), "--dry-run", "--project", str(tmp_path)]) == 0
    assert remaining(root) == set(RESULTS)  # a dry run lists only
    assert main([str(root), "--project", str(tmp_path)]) == 0
    assert remaining(root) == {name for name, deleted in RESULTS.items() if not deleted}
    assert not (root / "sample_shards").exists() and not (root / "checkpoints" / "ddpm" / "eps").exists()
    assert (root / "checkpoints" / "ddpm" / "mu" / "symmetric.ckpt").exists()
    assert "kept 1 checkpoint(s) of stopped trainings" in capsys.readouterr().out
    assert main([str(root), "--checkpoints", "--project", str(tmp_path)]) == 0
    assert not (root / "checkpoints").exists()


def test_clean_results_refuses_while_snakemake_holds_a_lock(tmp_path, capsys):
    root = make_tree(tmp_path / "results" / "quick")
    (tmp_path / ".snakemake" / "locks").mkdir(parents=True)
    (tmp_path / ".snakemake" / "locks" / "0.input.lock").write_text("")
    assert main([str(root), "--project", str(tmp_path)]) == 1
    assert remaining(root) == set(RESULTS)
    assert "snakemake --unlock" in capsys.readouterr().err
    assert main([str(tmp_path / "nowhere")]) == 0 and "nothing to clean" in capsys.readouterr().out
    (tmp_path / "a_file").write_text("")
    assert main([str(tmp_path / "a_file")]) == 1


def test_empty_folders_are_found_deepest_first_and_a_folder_with_files_stays(tmp_path):
    root = make_tree(tmp_path / "r")
    found = empty_folders(root / "checkpoints")
    assert found == [root / "checkpoints" / "ddpm" / "eps"]
    removed = remove_empty_folders(root / "sample_shards", itself=True)
    assert removed[-1] == root / "sample_shards" and not (root / "sample_shards").exists()

