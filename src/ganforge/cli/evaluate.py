"""`ganforge eval sets | snapshot | pairs | cas` and `ganforge judge train`.

Each eval mode is its own subcommand with only the options it uses; the work is one library call each
(``metrics.evaluate.evaluate_sets`` / ``evaluate_snapshot`` / ``evaluate_pairs``, ``metrics.cas.run_cas_on_dataset``).
``--device`` is checked first (``core.device.resolve_device``), so a bad one fails before any work. Help texts
escape literal brackets (``\\[default: ...]``): the help is rich markup, where ``[...]`` is a style tag.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from ganforge.cli.base import _fail, _user_errors, app, parse_seeds

eval_app = typer.Typer(no_args_is_help=True, help="Evaluate with a stated protocol: two image sets, a snapshot "
                                                  "against a dataset, paired images, or CAS.")
app.add_typer(eval_app, name="eval")
judge_app = typer.Typer(no_args_is_help=True, help="The judge: a small domain classifier for offline FID/KID.")
app.add_typer(judge_app, name="judge")

# Options that several eval modes share, spelled once.
Extractor = Annotated[str, typer.Option(help="judge (shipped Fashion-MNIST judge), judge:PATH, inception, "
                                             "inception:clean, inception:PATH")]
CacheDir = Annotated[Path | None, typer.Option(help="feature cache \\[default: ~/.cache/ganforge/features]")]
Trunc = Annotated[float, typer.Option(min=0.0, max=2.0, help="StyleGAN2 truncation psi (1 = off)")]
Device = Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")]
AsJson = Annotated[bool, typer.Option("--json", help="print one JSON object: values and protocol")]


def _log(as_json: bool) -> Callable[[str], None]:
    # With --json, stdout holds only the JSON object; progress goes to stderr. Warnings always go to stderr.
    def log(message: str) -> None:
        if message.startswith("warning:"):
            from rich.console import Console
            from rich.markup import escape

            Console(stderr=True).print(f"[bold yellow]warning:[/] {escape(message.removeprefix('warning:').strip())}",
                                       highlight=False, soft_wrap=True)
        else:
            typer.echo(message, err=as_json)

    return log


def _device(device: str) -> str:
    """The --device value checked before any work ("auto" resolved); a ValueError names what is wrong."""
    from ganforge.core.device import resolve_device

    return str(resolve_device(device, "--device"))


def _not_images_as_snapshot(snapshot: str) -> None:
    # `eval snapshot real/ ...` with a folder of images: say which command compares image folders.
    path = Path(snapshot).expanduser()
    if not path.is_dir() or (path / "snapshots").is_dir() or (path / "config.json").exists():
        return
    exts = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
    if any(f.suffix.lower() in exts for f in path.rglob("*")):
        _fail(f"{snapshot} is a folder of images, not a snapshot or run folder. To compare two image sets: "
              f"ganforge eval sets REAL FAKE; to score a snapshot: ganforge eval snapshot SNAPSHOT --data REAL", 1)


def _print_record(record: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(record))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"ganforge eval ({record['kind']})")  # two short columns: fits 80 columns
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in record["metrics"].items():
        table.add_row(k, f"{v:.6g}" if isinstance(v, float) else str(v))
    Console().print(table)
    p = record["protocol"]
    ex = p.get("extractor")
    if ex:
        typer.echo(f"extractor {ex['extractor']} sha256 {ex['sha256'][:16]}..., real {p['real'].get('count')} "
                   f"images ({p['real'].get('split')}), fake {p['fake'].get('count')}; --json for the full protocol")
    if p.get("written_to"):
        typer.echo(f"appended to {p['written_to']}")
    if p.get("warnings"):
        Console(stderr=True).print(f"[bold yellow]warning:[/] these numbers come with {len(p['warnings'])} "
                                   "warning(s), printed above and kept in the record (protocol.warnings, --json)",
                                   highlight=False, soft_wrap=True)


# ---------------------------------------------------------------------------------------------------------
# eval
# ---------------------------------------------------------------------------------------------------------

@eval_app.command("sets")
def eval_sets(
    real: Annotated[str, typer.Argument(help="reference images: folder, .zip or built-in name")],
    fake: Annotated[str | None, typer.Argument(help="images compared with REAL: folder, .zip or built-in name "
                                                    "(required)", show_default=False)] = None,
    metrics: Annotated[str, typer.Option(help="comma list: fid,kid,pr,dc,is")] = "fid,kid",
    extractor: Extractor = "judge",
    resolution: Annotated[int | None, typer.Option(help="load folders at this size \\[default: the "
                                                         "extractor's]")] = None,
    resize: Annotated[str, typer.Option(help="crop | pad | stretch for folders")] = "crop",
    num: Annotated[int | None, typer.Option(min=2, help="images per set \\[default: all]")] = None,
    seed: Annotated[int, typer.Option(min=0, help="set subsets and KID subsets")] = 0,
    cache_dir: CacheDir = None,
    device: Device = "cpu",
    as_json: AsJson = False,
) -> None:
    """Compare two image sets (folders, .zip files or built-ins).

    Example: ganforge eval sets real/ fake/ --metrics fid,kid,pr --extractor judge:judges/judge-logos --json
    """
    if fake is None:
        _fail(f"eval sets compares two image sets: ganforge eval sets REAL FAKE (FAKE is compared with REAL; only "
              f"REAL = {real} was given). To score a snapshot against a dataset: ganforge eval snapshot SNAPSHOT "
              "--data REAL", 2)
    try:
        from ganforge.metrics.evaluate import evaluate_sets

        device = _device(device)
        record = evaluate_sets(real, fake, metrics, extractor, resolution, resize, num, seed, cache_dir, device,
                               log=_log(as_json))
        _print_record(record.to_dict(), as_json)
    except _user_errors() as exc:
        _fail(str(exc), 1)


@eval_app.command("snapshot")
def eval_snapshot(
    snapshot: Annotated[str, typer.Argument(help="snapshot path (with or without .safetensors) or run folder")],
    data: Annotated[str | None, typer.Option(help="reference dataset: folder, .zip or built-in (e.g. "
                                                  "fashion-mnist) (required)", show_default=False)] = None,
    metrics: Annotated[str, typer.Option(help="comma list: fid,kid,pr,dc,is,ppl")] = "fid,kid",
    extractor: Extractor = "judge",
    split: Annotated[str | None, typer.Option(help="reference split \\[default: test for built-ins]")] = None,
    num: Annotated[int, typer.Option(min=2, help="generated samples: seeds 0..num-1")] = 10_000,
    ppl_samples: Annotated[int | None, typer.Option(min=1, help="path pairs for ppl \\[default: --num]")] = None,
    trunc: Trunc = 1.0,
    seed: Annotated[int, typer.Option(min=0, help="KID subsets and PPL sampling")] = 0,
    cache_dir: CacheDir = None,
    device: Device = "cpu",
    as_json: AsJson = False,
) -> None:
    """Compare a snapshot's samples with a dataset (recorded in its run's metrics.jsonl).

    Example: ganforge eval snapshot runs/00003-x/snapshots/latest --data fashion-mnist --num 10000 --metrics fid,kid,is
    """
    _not_images_as_snapshot(snapshot)
    if data is None:
        _fail("eval snapshot needs --data, the reference dataset: ganforge eval snapshot SNAPSHOT --data REAL "
              "(a folder, .zip or built-in such as fashion-mnist). To compare two image folders: ganforge eval "
              "sets REAL FAKE", 2)
    try:
        from ganforge.metrics.evaluate import evaluate_snapshot

        device = _device(device)
        record = evaluate_snapshot(snapshot, data, metrics, extractor, num, split, trunc, seed, ppl_samples,
                                   cache_dir=cache_dir, device=device, log=_log(as_json))
        _print_record(record.to_dict(), as_json)
    except _user_errors() as exc:
        _fail(str(exc), 1)


@eval_app.command("pairs")
def eval_pairs(
    outputs: Annotated[str, typer.Argument(help="folder of restored / translated images")],
    references: Annotated[str, typer.Argument(help="folder of references, matched to OUTPUTS by file name")],
    metrics: Annotated[str, typer.Option(help="comma list: psnr,ssim,ms-ssim,perceptual")] = "psnr,ssim",
    extractor: Annotated[str | None, typer.Option(help="judge:PATH, the judge whose features `perceptual` "
                                                       "compares")] = None,
    crop_border: Annotated[int, typer.Option(min=0, help="pixels cropped from each border")] = 0,
    y_channel: Annotated[bool, typer.Option("--y-channel", help="PSNR/SSIM on BT.601 luma")] = False,
    device: Device = "cpu",
    as_json: AsJson = False,
) -> None:
    """Full-reference metrics of each output against its reference (BasicSR conventions).

    Example: ganforge eval pairs restored/ originals/ --metrics psnr,ssim --y-channel --crop-border 4
    """
    try:
        from ganforge.metrics.evaluate import evaluate_pairs

        device = _device(device)
        judge = extractor.split(":", 1)[1] if extractor and extractor.startswith("judge:") else None
        record = evaluate_pairs(outputs, references, metrics, crop_border, y_channel, judge, device,
                                log=_log(as_json))
        _print_record(record.to_dict(), as_json)
    except _user_errors() as exc:
        _fail(str(exc), 1)


@eval_app.command("cas")
def eval_cas(
    snapshot: Annotated[str, typer.Argument(help="conditional snapshot path or run folder")],
    data: Annotated[str, typer.Option(help="labelled dataset: built-in, or class subfolders under train/ and "
                                           "test/")],
    real_per_class: Annotated[str, typer.Option(help="N real images per class, comma list")] = "10,50,200",
    synthetic_per_class: Annotated[int, typer.Option(min=1, help="M synthetic images per class")] = 500,
    seeds: Annotated[str, typer.Option(help="classifier training seeds")] = "0-2",
    steps: Annotated[int, typer.Option(min=1, help="optimizer steps per classifier (every arm)")] = 2000,
    trunc: Trunc = 1.0,
    device: Device = "cpu",
    as_json: AsJson = False,
) -> None:
    """Classification Accuracy Score and augmentation uplift (Ravuri & Vinyals 2019).

    Example: ganforge eval cas runs/00005-x/snapshots/latest --data fashion-mnist --real-per-class 10,50,200
    """
    try:
        from ganforge.metrics.cas import CasConfig, run_cas_on_dataset

        device = _device(device)
        try:
            ns = [int(n) for n in real_per_class.split(",")]
        except ValueError:
            raise typer.BadParameter(f"{real_per_class!r} is not a comma list like 10,50,200",
                                     param_hint="--real-per-class") from None
        report = run_cas_on_dataset(snapshot, data, ns, synthetic_per_class, parse_seeds(seeds),
                                    CasConfig(steps=steps, trunc=trunc, device=device), log=_log(as_json))
        if as_json:
            typer.echo(json.dumps(report.to_dict()))
        else:
            for line in report.summary_lines():
                typer.echo(line)
    except _user_errors() as exc:
        _fail(str(exc), 1)


# ---------------------------------------------------------------------------------------------------------
# judge
# ---------------------------------------------------------------------------------------------------------

@judge_app.command("train")
def judge_train(
    data: Annotated[str, typer.Option(help="labelled data: fashion-mnist, digits, or a folder of class "
                                           "subfolders (with train/ and test/ for a test split)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for <name>.safetensors + <name>.json")] =
    Path("judges"),
    name: Annotated[str | None, typer.Option(help="snapshot name \\[default: judge-<dataset>]")] = None,
    resolution: Annotated[int, typer.Option(help="input size; a multiple of 8")] = 32,
    resize: Annotated[str, typer.Option(help="pad | crop | stretch (how images reach the resolution)")] = "pad",
    epochs: Annotated[int, typer.Option(min=1, max=1000)] = 6,
    width: Annotated[int, typer.Option(min=4, max=512, help="channels of the first level (x2, x4 after)")] = 32,
    seed: Annotated[int, typer.Option(min=0)] = 0,
) -> None:
    """Train a judge on a labelled dataset and save it as a snapshot; use it as --extractor judge:PATH."""
    try:
        from ganforge.metrics.judge import save_judge, train_judge

        net, meta = train_judge(data, resolution, resize, epochs, width, seed, log=typer.echo)
        stem = name or "judge-" + "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in Path(data).name)
        path = save_judge(net, out, stem, meta)
        typer.echo(f"accuracy {meta['test_accuracy']:.4f} on the {meta['accuracy_measured_on']}; wrote {path}")
    except _user_errors() as exc:
        _fail(str(exc), 1)
