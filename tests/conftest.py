import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Workflow rules call `python`; in tests that must be the interpreter running the tests.
os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
FMNIST_DEBIAN = Path("/usr/share/datasets/fashion-mnist")


def copy_project(dest: Path) -> Path:
    """A copy of the tracked project files (no results, no venv), as a fresh clone would have."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        src = ROOT / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)
    return dest


def stage_paper_inputs(project: Path) -> list:
    """`--config` values under which the paper DAG builds in a project copy without the real files
    it needs there: empty stand-ins for the Inception weights and the pre-staged CIFAR-10 archive
    (at parse time the workflow only checks that they exist)."""
    staged = project / "staged"
    staged.mkdir(exist_ok=True)
    (staged / "pt_inception-2015-12-05-6726825d.pth").touch()
    (staged / "cifar-10-python.tar.gz").touch()
    return ["inception_weights=staged/pt_inception-2015-12-05-6726825d.pth",
            "cifar10_root=staged/cifar-10-python.tar.gz"]


@pytest.fixture(autouse=True)
def one_torch_thread():
    # In-process torch tests are tiny: a second intra-op thread only adds contention on 2 cores.
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def project(tmp_path):
    return copy_project(tmp_path / "project")


@pytest.fixture(scope="session")
def fmnist_npz(tmp_path_factory):
    if not (FMNIST_DEBIAN / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    from diffrepro.data import prepare

    path = tmp_path_factory.mktemp("data") / "fashion_mnist.npz"
    prepare(path)
    return path
