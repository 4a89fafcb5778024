"""What a run leaves under a results folder that no rule reads, and its removal.

Safe to delete (nothing is lost that a rule would not rebuild, and no finished result is touched):
- unfinished writes: `<name>.part<suffix>`, `<name>.part` and `*.tmp` files. Every writer goes through a
  temporary and renames it when complete (io.atomic_path), so these are what a killed job was writing;
  the job rewrites them when it runs again.
- empty folders, e.g. a training's checkpoint folder once its checkpoint is gone.
- with `checkpoints=True`, the resume points of trainings that were stopped before they finished
  (`checkpoints/`; a finished training deletes its own): deleting one restarts that training from step 0.

Models, sample sets, features, metrics, logs and benchmarks are results and are never touched.
Torch-free: the Snakefile calls `remove_empty_folders` when a run succeeds.

    python -m diffrepro.leftovers results/quick [--checkpoints] [--dry-run]
"""

import argparse
import os
import sys
from pathlib import Path


def is_unfinished_write(path: Path) -> bool:
    name = path.name
    return ".part." in name or name.endswith((".part", ".tmp"))


def unfinished_writes(results) -> list[Path]:
    return sorted(p for p in Path(results).rglob("*") if p.is_file() and is_unfinished_write(p))


def stopped_checkpoints(results) -> list[Path]:
    folder = Path(results) / "checkpoints"
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


def empty_folders(results) -> list[Path]:
    """Folders under `results` (not itself) with no file anywhere below them, deepest first."""
    results = Path(results)
    if not results.is_dir():
        return []
    empty, has_files = [], set()
    for root, _, files in os.walk(results, topdown=False):
        root = Path(root)
        if files or any(child in has_files for child in root.iterdir() if child.is_dir()):
            has_files.add(root)
        elif root != results:
            empty.append(root)
    return empty


def remove_empty_folders(results, *, itself=False) -> list[Path]:
    """Remove the empty folders under `results` (and `results` too if `itself` and it ends up empty)."""
    removed = []
    folders = empty_folders(results)
    if itself and Path(results).is_dir() and all(p in folders for p in Path(results).iterdir()):
        folders.append(Path(results))
    for folder in folders:
        try:
            folder.rmdir()
            removed.append(folder)
        except OSError:  # something was written into it meanwhile: it stays
            pass
    return removed


def snakemake_is_running(project=".") -> bool:
    """Snakemake holds a lock under .snakemake/locks while a run of this project is going."""
    locks = Path(project) / ".snakemake" / "locks"
    return locks.is_dir() and any(locks.iterdir())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Delete what runs left under a results folder (see the module doc).")
    p.add_argument("results", help="a scale's results folder, e.g. results/quick")
    p.add_argument("--checkpoints", action="store_true",
                   help="also delete the resume points of stopped trainings (they restart from step 0)")
    p.add_argument("--dry-run", action="store_true", help="list, delete nothing")
    p.add_argument("--project", default=".", help="the project folder (where .snakemake is)")
    args = p.parse_args(argv)
    results = Path(args.results)
    if not results.exists():  # a fresh clone, or a scale never run here
        print(f"nothing to clean: {results} does not exist (no run of that scale in this folder)")
        return 0
    if not results.is_dir():
        print(f"error: {results} is not a folder; give a scale's results folder, e.g. results/quick", file=sys.stderr)
        return 1
    if snakemake_is_running(args.project) and not args.dry_run:
        print(f"error: Snakemake holds a lock in {Path(args.project) / '.snakemake' / 'locks'} (a run is going, or one "
              "was killed: then `snakemake --unlock` first); its unfinished writes are in use", file=sys.stderr)
        return 1
    files = unfinished_writes(results) + (stopped_checkpoints(results) if args.checkpoints else [])
    for path in files:
        print(f"{'would delete' if args.dry_run else 'deleting'} {path}")
        if not args.dry_run:
            path.unlink(missing_ok=True)
    folders = empty_folders(results) if args.dry_run else remove_empty_folders(results)
    for folder in folders:
        print(f"{'would delete' if args.dry_run else 'deleted'} empty folder {folder}")
    kept = [] if args.checkpoints else stopped_checkpoints(results)
    if kept:
        print(f"kept {len(kept)} checkpoint(s) of stopped trainings under {results / 'checkpoints'} "
              "(--checkpoints deletes them; those trainings then restart from step 0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
