"""Memorization scores from per-token losses now and under an edit, AUROC, and the run-level alarm.

A sequence example's memorization is a few tokens whose loss collapsed and that the edit brings
back up; a mean over all of its tokens dilutes them. The scores here (all "higher = more
memorized"):
- `loss`: minus the example's mean loss now (the classic baseline);
- `mean`: the mean per-token loss increase under the edit (the v1 contract's loss_edited − loss_now);
- `peak`: the mean of the example's k largest per-token loss increases (ProbeResult v2 `peak_edited`).

The alarm (`exceedance`) counts the training examples whose score exceeds the j-th largest probe
score. If training examples and probes were exchangeable (nothing memorized), the share of
training scores above that order statistic is Beta(j, m + 1 − j) distributed, so the count among
n is beta-binomial: the p-value of the observed count is exact, whatever the score's scale.
"""
import math

import numpy as np
import torch
from scipy import stats


def token_stats(losses_now, losses_edited, valid):
    """(increase, valid) per token, float64, increase 0 where not valid."""
    inc = (losses_edited.double() - losses_now.double()) * valid
    return inc, valid


def mean_increase(losses_now, losses_edited, valid):
    n = valid.sum(1).clamp(min=1)
    return ((losses_edited.double() - losses_now.double()) * valid).sum(1) / n


def peak(losses_now, losses_edited, valid, k):
    """Per example: mean of its k largest per-token loss increases (ProbeResult v2 peak_edited)."""
    return top_k_mean(token_increase(losses_now, losses_edited), valid, k)


LOSS_FLOOR = 1e-3  # nats: keeps log-ratios of near-zero float32 losses out of rounding noise


def token_increase(losses_now, losses_edited):
    """Per token: the loss increase under the edit (nats)."""
    return losses_edited.double() - losses_now.double()


def token_log_ratio(losses_now, losses_edited, floor=LOSS_FLOOR):
    """Per token: log((ℓ_edited + c) / (ℓ_now + c)), the relative loss increase. A memorized token's
    loss is near 0; the edit multiplies it while adding little in absolute terms (the softmax is
    saturated), so the ratio sees what the difference misses."""
    return torch.log(losses_edited.double() + floor) - torch.log(losses_now.double() + floor)


def token_memorization(losses_now, losses_edited, floor=LOSS_FLOOR, weight=0.5):
    """Per token: the log-ratio plus `weight` x the token's confidence now, −log(ℓ_now + c):
    memorized = fragile under the edit AND confidently predicted now."""
    return token_log_ratio(losses_now, losses_edited, floor) - weight * torch.log(losses_now.double() + floor)


def top_k_mean(per_token, valid, k):
    """Per example: the mean of its k largest per-token values (over all its tokens when fewer)."""
    top = per_token.masked_fill(~valid, -math.inf).sort(dim=1, descending=True).values[:, :k]
    counts = valid.sum(1).clamp(max=k)
    ranks = torch.arange(top.shape[1]).expand_as(top)
    return torch.where(ranks < counts[:, None], top, torch.zeros_like(top)).sum(1) / counts.clamp(min=1)


def mean_loss(losses, valid):
    return (losses.double() * valid).sum(1) / valid.sum(1).clamp(min=1)


def auroc(positives, negatives):
    """P(score of a positive > score of a negative), ties counted half (Mann-Whitney)."""
    pos, neg = np.asarray(positives, dtype=np.float64), np.asarray(negatives, dtype=np.float64)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    ranks = stats.rankdata(np.concatenate([pos, neg]))
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def roc_curve(positives, negatives):
    """(false positive rate, true positive rate) arrays, thresholds from high to low."""
    scores = np.concatenate([positives, negatives])
    labels = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))])
    order = np.argsort(-scores, kind="stable")
    tp = np.concatenate([[0], np.cumsum(labels[order])])
    fp = np.concatenate([[0], np.cumsum(1 - labels[order])])
    return fp / max(1, len(negatives)), tp / max(1, len(positives))


def betabinom_sf(k, n, a, b):
    """P(K >= k) for K ~ BetaBinomial(n, a, b)."""
    return float(stats.betabinom.sf(k - 1, n, a, b)) if k > 0 else 1.0


def exceedance(train_scores, probe_scores, quantile=0.95):
    """The run-level alarm statistic: how many training scores exceed the probes' high quantile.

    The threshold is the j-th largest probe score, j = max(1, round((1 − quantile)·m)). Returns
    {count, n, expected, share, expected_share, ratio, p_value, threshold}; `p_value` is the exact
    beta-binomial tail under exchangeability of training and probe scores."""
    probe = np.sort(np.asarray(probe_scores, dtype=np.float64))[::-1]
    train = np.asarray(train_scores, dtype=np.float64)
    m, n = len(probe), len(train)
    j = max(1, int(round((1 - quantile) * m)))
    threshold = probe[j - 1]
    count = int((train > threshold).sum())
    expected_share = j / (m + 1)
    return {"count": count, "n": n, "threshold": float(threshold), "j": j, "m": m,
            "share": count / max(1, n), "expected_share": expected_share,
            "expected": n * expected_share, "ratio": (count / max(1, n)) / expected_share,
            "p_value": betabinom_sf(count, n, j, m + 1 - j)}
