"""error-surface: the figures, drawn from the saved results alone."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import LogNorm

from dlprobe.experiments.error_surface.protocol import model_text, probed_run
from dlprobe.experiments.plotting import COLORS, new_figure


def figures(results: dict) -> dict:
    figs = {}
    formula = results["function"]["formula"]
    probed = results["probed_seed"]

    fig, ax = new_figure(width=7.0, height=4.5)
    for i, seed in enumerate(results["seeds"]):
        rows = [r for r in results["line"] if r["seed"] == seed]
        ax.plot(
            [r["alpha"] for r in rows],
            [r["train_loss"] for r in rows],
            color=COLORS[i % len(COLORS)],
            lw=2.0 if seed == probed else 1.2,
            label=f"seed {seed}" + (" (probed below)" if seed == probed else ""),
        )
    for a, text in ((0, "initial"), (1, "final")):
        ax.axvline(a, color="gray", ls="--", lw=1)
        ax.text(a, 0.02, f" {text}", transform=ax.get_xaxis_transform(), fontsize=8, color="gray")
    ax.set_yscale("log")
    ax.set(
        xlabel="α   (θ(α) = (1 − α) θ_initial + α θ_final)",
        ylabel="training loss (MSE)",
        title=f"Loss on the line from initial to final weights\n{model_text(results)}, "
        f"{formula}, n={len(results['seeds'])} runs",
    )
    ax.legend(fontsize=8)
    figs["line-init-final"] = fig

    names = results["model"]["parameter_names"]
    ncols = int(np.ceil(np.sqrt(len(names))))
    nrows = int(np.ceil(len(names) / ncols))
    fig, axes = new_figure(
        ncols=ncols, nrows=nrows, width=2.1, height=1.6, sharex=True, sharey=True, squeeze=False
    )
    final = probed_run(results)["final_train_loss"]
    for i, ax in enumerate(axes.flat):
        if i >= len(names):
            ax.axis("off")
            continue
        rows = [r for r in results["per_parameter"] if r["index"] == i]
        ax.plot([r["delta"] for r in rows], [r["loss"] for r in rows], color=COLORS[0], lw=1.2)
        ax.plot([0], [final], "*", color="red", ms=7)
        ax.set_yscale("log")
        ax.set_title(f"{names[i]} = {rows[0]['value']:.2f}", fontsize=8, pad=2)
        ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("change δ", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("loss", fontsize=8)
    fig.suptitle(
        f"Training loss when one parameter alone is moved by δ (one panel per parameter, "
        f"n={len(names)}); * = final weights of seed {probed}\n{model_text(results)}, {formula}",
        fontsize=10,
    )
    fig.tight_layout()
    figs["per-parameter"] = fig

    fig, axes = new_figure(ncols=2, width=5.5, height=4.8)
    rows = results["perturbed"]
    losses = np.array([r["loss"] for r in rows])
    norm = LogNorm(vmin=max(losses.min(), 1e-12), vmax=losses.max())
    end = results["perturbed_final"]
    evr = results["perturbed_variance"]
    radii = sorted({r["radius"] for r in rows})
    for ax, key, label in zip(axes, ("pca", "tsne"), ("PCA", "PCA then t-SNE"), strict=True):
        sc = ax.scatter(
            [r[f"{key}_x"] for r in rows],
            [r[f"{key}_y"] for r in rows],
            c=losses,
            norm=norm,
            cmap="viridis",
            s=10,
            lw=0,
        )
        ax.plot(
            end[f"{key}_x"],
            end[f"{key}_y"],
            "*",
            color="red",
            ms=14,
            mec="white",
            label="final weights",
        )
        ax.set_title(label, fontsize=10)
        ax.legend(fontsize=8, loc="upper right")
    axes[0].set(
        xlabel=f"PC1 ({100 * evr[0]:.1f}% of variance)",
        ylabel=f"PC2 ({100 * evr[1]:.1f}% of variance)",
    )
    axes[1].set(xlabel="t-SNE 1", ylabel="t-SNE 2")
    fig.colorbar(sc, ax=axes, label="training loss (log scale)")
    fig.suptitle(
        f"{len(rows)} Gaussian perturbations of seed {probed}'s final weights "
        f"(std {', '.join(f'{r:g}' for r in radii)} per parameter, "
        f"{len(rows) // len(radii)} each)"
    )
    figs["perturbed-samples"] = fig

    surf = results["surface"]
    a, b = np.array(surf["a"]), np.array(surf["b"])
    z = np.log10(np.clip(np.array(surf["loss"]), 1e-12, None)).T  # (b, a) for contour
    traj = results["trajectory"]
    fig, ax = new_figure(width=6.5, height=5.2)
    filled = ax.contourf(a, b, z, levels=30, cmap="viridis")
    ax.contour(a, b, z, levels=15, colors="white", linewidths=0.4, alpha=0.6)
    fig.colorbar(filled, ax=ax, label="log10 training loss")
    ax.plot(
        [t["a"] for t in traj],
        [t["b"] for t in traj],
        ".-",
        color="red",
        ms=4,
        lw=1,
        label=f"training trajectory (projected; {len(traj)} snapshots)",
    )
    ax.plot(
        traj[0]["a"], traj[0]["b"], "o", color="red", mfc="white", ms=8, label="initial weights"
    )
    ax.plot(0, 0, "*", color="red", mec="white", ms=15, label="final weights")
    ax.set(
        xlabel="direction 1 (random, filter-normalized)",
        ylabel="direction 2 (random, filter-normalized)",
        title=f"Loss around seed {probed}'s final weights\n{model_text(results)}, {formula}",
    )
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0.0, -0.14))
    figs["surface-contour"] = fig

    fig = new_figure(
        width=7.0, height=5.5, subplot_kw={"projection": "3d", "computed_zorder": False}
    )[0]
    ax = fig.axes[0]
    aa, bb = np.meshgrid(a, b)
    ax.plot_surface(aa, bb, z, cmap="viridis", lw=0, antialiased=True, alpha=0.95)
    ax.scatter(
        [0], [0], [np.log10(max(surf["center_loss"], 1e-12))], color="red", marker="*", s=120
    )
    ax.set(
        xlabel="direction 1",
        ylabel="direction 2",
        zlabel="log10 training loss",
        title=f"Loss surface around seed {probed}'s final weights (red *)\n"
        f"two random filter-normalized directions; {model_text(results)}",
    )
    ax.view_init(elev=35, azim=-60)
    figs["surface-3d"] = fig
    return figs
