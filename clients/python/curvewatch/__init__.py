"""Curvewatch's PyTorch client: watch a fine-tune for memorization.

    with curvewatch.watch(model, layers=["fc1", "fc2"], run_id="ft-1", bootstrap="127.0.0.1:9092") as w:
        for step, (x, y, ids) in enumerate(loader):
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            w.step(step, sample_ids=ids)
            opt.step(); opt.zero_grad()

`python3 -m curvewatch --help`: a small command line for a run's status, alerts and snapshots.
"""
from .answerer import CandidateAnswerer
from .examples import RecentExamples
from .partitioning import partition_for_key
from .publisher import Publisher, PublishError
from .safetensors import load_file, save_file
from .snapshots import SnapshotError, load_snapshot
from .version import __version__
from .watch import Watcher, watch

__all__ = ["watch", "Watcher", "Publisher", "PublishError", "CandidateAnswerer", "RecentExamples", "load_file",
           "save_file", "load_snapshot", "SnapshotError", "partition_for_key", "__version__"]
