"""Critical-difference analysis (Demsar 2006): Friedman test, Nemenyi CD, Wilcoxon-Holm option.

Blocks are experiment x metric pair; a method's score in a block is its hypervolume (higher is
better), so rank 1 is the best method. Ties share the average rank.

Statistics reported (Demsar 2006, section 3.2.2):
- `chi2`: Friedman's statistic 12N/(k(k+1)) [sum_j R_j^2 - k(k+1)^2/4] from the average ranks
  R_j, without tie correction, as in the paper, with its chi-square p-value (k-1 dof);
- `chi2_tie_corrected`: scipy.stats.friedmanchisquare's value (it corrects for ties);
- `ff`: the Iman-Davenport statistic (N-1) chi2 / (N(k-1) - chi2), F-distributed with
  (k-1, (k-1)(N-1)) dof, which Demsar recommends over chi2;
- `cd`: Nemenyi's critical difference q_alpha sqrt(k(k+1)/(6N)), q_alpha the studentized range
  quantile / sqrt(2) (2.569 for k=4, alpha=.05).

Too little evidence: with fewer than 3 methods there is no Friedman test (use a Wilcoxon
signed-rank test for two), and with fewer than `MIN_BLOCKS` = 5 blocks the chi-square
approximation is poor and the CD is about as wide as the whole rank axis (k=3, N=4: CD = 1.66
of a possible 2), so a diagram would show nothing but noise dressed as a result; we say so and
draw nothing. Demsar suggests N >= ~10 for the approximation to be good; between 5 and 9 blocks
the result carries a note.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from fairbench.report.choices import CD_TESTS

MIN_BLOCKS = 5
GOOD_BLOCKS = 10
MIN_METHODS = 3
TESTS = CD_TESTS


def rank_scores(scores: pd.DataFrame, higher_is_better: bool = True) -> pd.DataFrame:
    """Ranks within each block (row): 1 = best, ties share the average rank."""
    return scores.rank(axis=1, ascending=not higher_is_better, method="average")


def friedman_statistic(avg_ranks: np.ndarray, n_blocks: int) -> float:
    """Friedman's chi-square from average ranks (Demsar 2006, eq. in section 3.2.2)."""
    r = np.asarray(avg_ranks, dtype=float)
    k = len(r)
    return float(12 * n_blocks / (k * (k + 1)) * (np.sum(r**2) - k * (k + 1) ** 2 / 4))


def iman_davenport(chi2: float, n_blocks: int, k: int) -> float:
    """Iman-Davenport's F from Friedman's chi-square; infinite when every block agrees exactly."""
    denom = n_blocks * (k - 1) - chi2
    return math.inf if denom <= 1e-12 else float((n_blocks - 1) * chi2 / denom)


def q_alpha(k: int, alpha: float = 0.05) -> float:
    """Nemenyi's critical value: the studentized range quantile (infinite dof) over sqrt(2)."""
    return float(stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2))


def nemenyi_cd(k: int, n_blocks: int, alpha: float = 0.05) -> float:
    """Critical difference of average ranks for k methods over n_blocks blocks."""
    return q_alpha(k, alpha) * math.sqrt(k * (k + 1) / (6 * n_blocks))


@dataclass
class CDResult:
    """Outcome of a critical-difference analysis; `skipped` says why nothing was tested."""

    test: str
    alpha: float
    n_blocks: int
    methods: list[str]
    avg_ranks: pd.Series = field(default_factory=pd.Series)
    chi2: float = math.nan
    p_value: float = math.nan
    chi2_tie_corrected: float = math.nan
    ff: float = math.nan
    ff_p_value: float = math.nan
    cd: float | None = None
    pvalues: pd.DataFrame | None = None
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One paragraph for the console and the HTML report."""
        if self.skipped:
            return f"Critical-difference diagram skipped: {self.skipped}"
        parts = [
            f"Friedman chi2 = {self.chi2:.3f} (p = {self.p_value:.4g}; "
            f"tie-corrected {self.chi2_tie_corrected:.3f}), "
            f"Iman-Davenport F = {self.ff:.3f} (p = {self.ff_p_value:.4g}), k = {len(self.methods)}, "
            f"N = {self.n_blocks} blocks"
        ]
        if self.test == "nemenyi":
            parts.append(f"Nemenyi CD = {self.cd:.3f} at alpha = {self.alpha}")
        else:
            parts.append(f"pairwise Wilcoxon signed-rank tests, Holm-adjusted, alpha = {self.alpha}")
        return "; ".join(parts + self.notes)


def _complete(scores: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Keep methods scored in every block (Friedman needs complete blocks)."""
    keep = [c for c in scores.columns if scores[c].notna().all()]
    return scores[keep], [c for c in scores.columns if c not in keep]


def critical_difference(
    scores: pd.DataFrame,
    test: str = "nemenyi",
    alpha: float = 0.05,
    higher_is_better: bool = True,
    min_blocks: int = MIN_BLOCKS,
) -> CDResult:
    """Rank methods (columns) over blocks (rows), run Friedman and the chosen post-hoc test."""
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; choose one of {', '.join(TESTS)}")
    scores, dropped = _complete(scores.astype(float))
    result = CDResult(test=test, alpha=alpha, n_blocks=len(scores), methods=list(scores.columns))
    if dropped:
        result.notes.append(f"left out (not scored in every block): {', '.join(map(str, dropped))}")
    k, n = scores.shape[1], scores.shape[0]
    if k < MIN_METHODS:
        result.skipped = f"{k} method(s) scored in every block; a Friedman test needs at least {MIN_METHODS}"
        return result
    if n < min_blocks:
        result.skipped = (
            f"only {n} block(s) (experiment x metric pair); at least {min_blocks} are needed for a "
            f"meaningful Friedman/Nemenyi analysis (Demsar 2006 suggests about {GOOD_BLOCKS})"
        )
        return result
    ranks = rank_scores(scores, higher_is_better)
    result.avg_ranks = ranks.mean(axis=0).sort_values(kind="stable")
    result.chi2 = friedman_statistic(ranks.mean(axis=0).to_numpy(), n)
    result.p_value = float(stats.chi2.sf(result.chi2, k - 1))
    try:
        result.chi2_tie_corrected = float(stats.friedmanchisquare(*scores.to_numpy().T).statistic)
    except (ValueError, ZeroDivisionError):  # every block fully tied
        result.chi2_tie_corrected = math.nan
    result.ff = iman_davenport(result.chi2, n, k)
    result.ff_p_value = 0.0 if math.isinf(result.ff) else float(stats.f.sf(result.ff, k - 1, (k - 1) * (n - 1)))
    if n < GOOD_BLOCKS:
        result.notes.append(f"note: with N = {n} < {GOOD_BLOCKS} blocks the chi-square approximation is rough")
    if test == "nemenyi":
        result.cd = nemenyi_cd(k, n, alpha)
        # Decisions from the same CD the diagram draws, so picture and table cannot disagree.
        diff = np.abs(result.avg_ranks.to_numpy()[:, None] - result.avg_ranks.to_numpy()[None, :])
        decided = np.where(diff > result.cd, 0.0, 1.0)
        result.pvalues = pd.DataFrame(decided, index=result.avg_ranks.index, columns=result.avg_ranks.index)
    else:
        result.pvalues = wilcoxon_holm(scores)
    return result


def wilcoxon_holm(scores: pd.DataFrame) -> pd.DataFrame:
    """Pairwise Wilcoxon signed-rank p-values over blocks, Holm-adjusted (symmetric, diag 1)."""
    cols = list(scores.columns)
    pairs, raw = [], []
    for i in range(len(cols)):
        for j in range(i + 1, len(cols)):
            d = scores[cols[i]].to_numpy() - scores[cols[j]].to_numpy()
            if np.allclose(d, 0):
                p = 1.0  # identical scores: no evidence of a difference
            else:
                p = float(stats.wilcoxon(scores[cols[i]], scores[cols[j]], zero_method="wilcox").pvalue)
            pairs.append((cols[i], cols[j]))
            raw.append(p)
    # Holm step-down: the m-th smallest p is multiplied by (m_total - m + 1), kept monotone.
    order = np.argsort(raw, kind="stable")
    adjusted = np.empty(len(raw))
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (len(raw) - rank) * raw[idx]))
        adjusted[idx] = running
    out = pd.DataFrame(1.0, index=cols, columns=cols)
    for (a, b), p in zip(pairs, adjusted, strict=True):
        out.loc[a, b] = out.loc[b, a] = p
    return out


def plot_cd(result: CDResult, title: str = ""):  # -> matplotlib Figure
    """Demsar-style diagram: average ranks on a top axis, the CD bar above it, cliques of methods
    not significantly different joined by bars (scikit-posthocs draws ranks and cliques)."""
    import matplotlib.pyplot as plt
    import scikit_posthocs as sp
    from matplotlib.transforms import blended_transform_factory, offset_copy

    from fairbench.report.figures import apply_style

    apply_style()
    k = len(result.methods)
    # The labels sit left and right of the rank axis: the figure widens with the longest label
    # and the axis with the number of ranks, so that 30 methods keep a readable axis.
    longest = max(len(f"{m} (00.00)") for m in result.avg_ranks.index)
    fig, ax = plt.subplots(figsize=(max(3.0, 0.15 * k) + 2 * 0.075 * longest + 0.6, 1.5 + 0.3 * k))
    sig = result.pvalues.loc[result.avg_ranks.index, result.avg_ranks.index]
    sp.critical_difference_diagram(
        result.avg_ranks,
        sig,
        alpha=result.alpha,
        ax=ax,
        label_fmt_left="{label} ({rank:.2f})",
        label_fmt_right="({rank:.2f}) {label}",
    )
    if result.cd is not None:
        # Drawn here rather than by scikit-posthocs, whose CD bar sits on the tick labels.
        base = blended_transform_factory(ax.transData, ax.transAxes)
        x0 = max(1.0, min(ax.get_xlim()))  # from the axis' first rank, not left of it
        bar = offset_copy(base, fig=fig, y=26, units="points")
        ax.plot([x0, x0 + result.cd], [1, 1], transform=bar, color="k", lw=1.5, clip_on=False)
        for x in (x0, x0 + result.cd):
            ax.plot([x, x], [1, 1], transform=bar, marker="|", ms=8, color="k", clip_on=False)
        label = offset_copy(base, fig=fig, y=30, units="points")
        ax.text(
            x0 + result.cd / 2,
            1,
            f"CD = {result.cd:.2f}",
            transform=label,
            ha="center",
            va="bottom",
            fontsize=8,
        )
    name = "Nemenyi" if result.test == "nemenyi" else "Wilcoxon-Holm"
    ax.set_title(
        title or f"Average rank by hypervolume ({name}, alpha = {result.alpha}, N = {result.n_blocks} blocks)",
        fontsize=9,
        pad=48 if result.cd is not None else 22,
    )
    fig.tight_layout()
    return fig
