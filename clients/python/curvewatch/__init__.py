"""Curvewatch's PyTorch client: watch a fine-tune for memorization.

    with curvewatch.watch(model, layers=["fc1", "fc2"], run_id="ft-1", bootstrap="127.0.0.1:9092") as w:
        for step, (x, y, ids) in enumerate(loader):
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            w.step(step, sample_ids=ids)
            opt.step(); opt.zero_grad()
"""
from .candidates import CandidateAnswerer, RecentExamples
from .publisher import Publisher, PublishError
from .safetensors import load_file, save_file
from .snapshots import SnapshotError, load_snapshot
from .watch import Watcher, watch

__all__ = ["watch", "Watcher", "Publisher", "PublishError", "CandidateAnswerer", "RecentExamples", "load_file",
           "save_file", "load_snapshot", "SnapshotError"]
