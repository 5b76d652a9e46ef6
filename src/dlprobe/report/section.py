"""One experiment's section of a report: question, settings, numbers, figures."""

from __future__ import annotations

from dlprobe.report.html import esc, fmt, img_tag, table


def experiment_section(
    exp,
    info: dict,
    summary: dict,
    observations: list[str],
    figures: dict[str, bytes],
    settings: list[tuple[str, str]],
    anchor: str | None = None,
    heading: str = "h2",
    results_link: str | None = None,
) -> str:
    """HTML of one experiment: ``info`` is the run's config.json content."""
    sub = "h3" if heading == "h2" else "h4"
    parts = [
        f"<{heading} id='{esc(anchor or exp.id)}'>{esc(exp.homework)} · {esc(exp.title)} "
        f"<span class='muted'>({esc(exp.id)})</span></{heading}>",
        f"<p><b>Question.</b> {esc(exp.question)}</p>",
    ]
    profile = info.get("profile", "")
    if profile != "full" and exp.full_differs:
        parts.append(
            f"<div class='note'>Profile <b>{esc(profile)}</b>: {esc(exp.full_differs)} "
            f"Run with <code>--profile full</code> for the homework's settings.</div>"
        )
    parts.append(f"<{sub}>Settings</{sub}>")
    parts.append(table(settings, header=["setting", "value"]))
    if observations:
        parts.append(f"<{sub}>Observations (computed from the results)</{sub}>")
        parts.append(
            "<ul class='obs'>" + "".join(f"<li>{esc(o)}</li>" for o in observations) + "</ul>"
        )
    if summary:
        parts.append(f"<{sub}>Summary</{sub}>")
        parts.append(table([(k, fmt(v)) for k, v in summary.items()], header=["quantity", "value"]))
    parts.append(f"<{sub}>Figures</{sub}>")
    for name, png in figures.items():
        caption = exp.captions.get(name, name)
        parts.append(
            f"<figure>{img_tag(png, caption)}<figcaption><b>{esc(name)}</b>: "
            f"{esc(caption)}</figcaption></figure>"
        )
    if results_link:
        parts.append(
            f"<p class='muted'>Data behind every figure: "
            f"<a href='{esc(results_link)}'>{esc(results_link)}</a></p>"
        )
    return "\n".join(parts)
