"""Image-to-image translation: pix2pix (paired, Isola et al. 2017) and CycleGAN (unpaired, Zhu et al. 2017), two
tasks of the one loop in one file, because they share their networks, data preparation, preview and pipeline.

pix2pix (task "pix2pix"): modules "G" (nets/unet_translator.py or nets/resnet_translator.py) and "D" (nets/patchgan.py
on concat(A, B)); a batch is {"input": A, "target": B} from ``load_pairs``: A|B files, A/ + B/ folders, derived
pairs (``data.derive``: edges, gray, lab, a degradation chain) or label maps (``data.label_classes``: A/ holds PNGs
of class indices, one-hot encoded here; ``data.source="scenes"`` generates a procedural set, data/scenes.py).

    D   every step: (L_cGAN on D(A, B) real vs D(A, G(A)) fake) / 2 (the paper halves D's objective, sec. 3.3)
    G   every step: L_cGAN(G) + l1_weight * |B - G(A)|_1 (eq. 4)

CycleGAN (task "cyclegan"): modules "G" (a GeneratorPair: AtoB = G, BtoA = F) and "D" (a DiscriminatorPair: D_A,
D_B), so "both Ds, then both Gs" are the loop's two phases with one Adam each, exactly the reference's chained
optimizers. A batch is {"A", "B"} from ``load_unpaired`` (trainA/ + trainB/).

    D   every step: LSGAN D_B(B) vs D_B(pool_B(G(A))) + D_A(A) vs D_A(pool_A(F(B))), fakes from the history pools
    G   every step: LSGAN G(A), F(B) + lambda (|F(G(A)) - A|_1 + |G(F(B)) - B|_1) + identity_weight * lambda
        (|G(B) - B|_1 + |F(A) - A|_1)

Adversarial losses come from losses.ADVERSARIAL, scaled to the reference's (junyanz GANLoss): D's "ns" loss is halved
(BCE on real + fake, / 2), and G's "lsgan" loss is doubled (MSE, not 1/2 MSE). Scores are PatchGAN maps
[N, 1, h, w]; every loss averages over all patches.

History pools (Shrivastava et al. 2017; CycleGAN sec. 4): up to ``pool_size`` past fakes per domain; once full, each
new fake is, with probability 1/2, swapped for a random stored one. Draws come from the step's generator and the
pools are in the checkpoint (``extra_state``), so a resume continues exactly.

One generator forward per step (``shared``, the loop's optional hook, run before the phases): G(A) (CycleGAN: G(A)
and F(B)) with its graph; D's phase scores it detached, G's phase backpropagates through it, as the reference
implementations do. One dropout mask per step, BatchNorm's running statistics updated once.

Learning rate: ``lr_scale`` is the loop's optional schedule hook: constant, then linear to 0 over the last
(1 - loss.lr_decay_start) of the run's steps (CycleGAN: the second half).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.config import (
    CycleGANLoss,
    DataConfig,
    OptimConfig,
    Pix2PixLoss,
    ResNetTranslatorModel,
    UNetTranslatorModel,
)
from ganforge.core.grid import to_uint8
from ganforge.data.batches import TrainData
from ganforge.data.builtin import DatasetError
from ganforge.data.derive import parse_derive
from ganforge.data.pairs import PairBatches, UnpairedBatches, load_pairs, load_unpaired
from ganforge.data.scenes import SCENE_CLASSES, parse_scenes, scenes_folder
from ganforge.losses import get_adversarial
from ganforge.nets import build_net
from ganforge.tasks.base import Phase, StepInputs, adam, optional_ema

PREVIEW_SEED = 12345  # the preview's crops are fixed for the whole run
TranslatorModel = UNetTranslatorModel | ResNetTranslatorModel


# ---------------------------------------------------------------------------------------------------------
# Shared pieces


def build_translator(model: TranslatorModel, in_channels: int, out_channels: int) -> dict[str, Any]:
    """(registry name, constructor kwargs) of the generator of ``model.arch`` for these channel counts."""
    kw: dict[str, Any] = dict(in_channels=in_channels, out_channels=out_channels, width=model.width,
                              norm=model.norm, dropout=model.dropout)
    if model.arch == "unet_translator":
        return {"net": "unet_translator", "config": {**kw, "depth": model.depth}}
    return {"net": "resnet_translator", "config": {**kw, "blocks": model.blocks}}


def patchgan_config(model: TranslatorModel, in_channels: int) -> dict[str, Any]:
    return dict(in_channels=in_channels, width=model.d_width, layers=model.d_layers, norm=model.norm)


def adversarial(name: str) -> tuple[Callable[[Tensor, Tensor], Tensor], Callable[[Tensor], Tensor]]:
    """(D loss, G loss) on patch scores, scaled as the reference: BCE D loss / 2, MSE G loss for LSGAN."""
    adv = get_adversarial(name)
    if name == "ns":
        return (lambda real, fake: 0.5 * adv.d(real, fake)), adv.g
    return adv.d, (lambda fake: 2.0 * adv.g(fake))  # lsgan: losses.py's D loss is already 1/2 (MSE + MSE)


def linear_decay(step: int, total_steps: int, start: float) -> float:
    """1 before ``start`` x total_steps, then falling linearly to 0 at total_steps (CycleGAN sec. 4: "keep the
    same learning rate for the first 100 epochs and linearly decay the rate to zero over the next 100")."""
    begin = int(start * total_steps)
    if step < begin or total_steps <= begin:
        return 1.0
    return (total_steps - step) / (total_steps - begin)


def one_hot_labels(x: Tensor, classes: int) -> Tensor:
    """A label map as loaded ([N, 1, H, W] in [-1, 1] from uint8 class indices) -> one-hot [N, K, H, W] in {0, 1}.
    ValueError when an index is >= K (not checked while exporting a graph: an index >= K then has no 1)."""
    index = ((x[:, :1].float() + 1.0) * 127.5).round().long()  # [N, 1, H, W]: back to the PNG's values
    if torch.compiler.is_exporting():
        return (index == torch.arange(classes, device=x.device)[None, :, None, None]).to(x.dtype)
    top = int(index.max())
    if top >= classes:
        raise ValueError(f"a label map holds class index {top}, but data.label_classes={classes} allows "
                         f"0..{classes - 1}; set data.label_classes={top + 1} or fix the label PNGs")
    return F.one_hot(index[:, 0], classes).permute(0, 3, 1, 2).to(x.dtype)


def detect_label_classes(pairs: PairBatches) -> int:
    """K = the largest class index in the training label maps (the input side of the pairs) + 1, at least 2."""
    top = max(int(pairs.input.image(int(i)).max()) for i in np.unique(pairs.rows[:, 0]))
    return max(2, top + 1)


# A fixed palette for showing label maps (previews, docs): class k -> colour k.
PALETTE = np.array([[70, 130, 220], [90, 160, 60], [250, 210, 60], [110, 70, 40], [30, 100, 40], [40, 70, 160],
                    [200, 60, 60], [160, 160, 160], [230, 120, 200], [20, 20, 20]], dtype=np.uint8)


def show_labels(index: Tensor) -> Tensor:
    """Class indices [N, H, W] (int) -> colours [N, 3, H, W] in [-1, 1] for a preview grid."""
    palette = torch.from_numpy(PALETTE).float() / 127.5 - 1.0
    return palette[index.cpu() % len(PALETTE)].permute(0, 3, 1, 2)


def _as_rgb(x: Tensor, channels: int) -> Tensor:
    # A gray row next to RGB rows in a grid: replicate.
    return x.expand(-1, channels, -1, -1) if x.shape[1] == 1 and channels == 3 else x


class ImagePool:
    """A history of up to ``size`` generated images (Shrivastava et al. 2017), as CycleGAN's image buffer."""

    def __init__(self, size: int):
        self.size = size
        self.images: Tensor | None = None  # [k, C, H, W], k <= size

    def query(self, fakes: Tensor, gen: torch.Generator) -> Tensor:
        """Images for D: while filling, the new fakes (and they are stored); once full, each new fake is returned
        with probability 1/2, else a random stored one is returned and replaced by it. Draws, per image once the
        pool is full: ``rand(1)``, then ``randint(size, (1,))``."""
        if self.size == 0:
            return fakes
        out = []
        for img in fakes.detach():
            stored = 0 if self.images is None else len(self.images)
            if stored < self.size:
                self.images = img[None].clone() if self.images is None else torch.cat([self.images, img[None]])
                out.append(img)
                continue
            swap = float(torch.rand(1, generator=gen, device=gen.device)) > 0.5
            k = int(torch.randint(self.size, (1,), generator=gen, device=gen.device))
            if swap:
                out.append(self.images[k].clone())
                self.images[k] = img
            else:
                out.append(img)
        return torch.stack(out)

    def state(self) -> Tensor:
        return self.images.detach().cpu() if self.images is not None else torch.zeros(0)

    def load(self, images: Tensor, device: torch.device) -> None:
        self.images = images.to(device) if images.numel() else None


def _eval_outputs(net: nn.Module, fn: Callable[[], Tensor]) -> Tensor:
    """``fn()`` with ``net`` in eval mode (BatchNorm running statistics, no dropout: what inference does) and
    without gradients; the module's mode is restored."""
    was_training = net.training
    net.eval()
    with torch.no_grad():
        out = fn()
    net.train(was_training)
    return out.clamp(-1, 1)


def _lr_scale(loss: Pix2PixLoss | CycleGANLoss) -> Callable[[int, int], float]:
    return lambda step, total_steps: linear_decay(step, total_steps, loss.lr_decay_start)


# ---------------------------------------------------------------------------------------------------------
# pix2pix


class Pix2PixTask:
    name: ClassVar[str] = "pix2pix"
    pipeline: ClassVar[str] = "translate"
    divergence_hint: ClassVar[str] = "Try lower learning rates (optim.g_lr, optim.d_lr) or loss.adversarial=lsgan"

    def __init__(self, model: TranslatorModel, loss: Pix2PixLoss, optim: OptimConfig, in_channels: int,
                 channels: int, label_classes: int | None, derive: str | None,
                 preview_batch: dict[str, Tensor] | None = None):
        self.model, self.loss = model, loss
        self.label_classes, self.derive = label_classes, derive
        g_in = label_classes or in_channels
        spec = build_translator(model, g_in, channels)
        self.G = build_net(spec["net"], **spec["config"])
        self.D = build_net("patchgan.D", **patchgan_config(model, g_in + channels))
        self.modules: dict[str, nn.Module] = {"G": self.G, "D": self.D}
        self.ema, self.snapshot_modules = optional_ema(self.modules, optim.ema_kimg)
        self.frozen: set[nn.Parameter] = set()
        self.grid_cols: int | None = None
        self.preview_batch = preview_batch
        self.adv_d, self.adv_g = adversarial(loss.adversarial)
        self.lr_scale = _lr_scale(loss)

    @staticmethod
    def load_data(data: DataConfig, device: torch.device) -> TrainData:
        """Aligned pairs (A|B files, A/ + B/), derived pairs (``data.derive``), label maps (``data.label_classes``,
        or the generated ``scenes`` set). No rotations: translation domains have an up and a down."""
        source = data.source
        scenes = parse_scenes(source)
        if scenes is not None:
            source = str(scenes_folder(*scenes))
        derive = parse_derive(data.derive) if data.derive else None
        if derive is not None and derive.scale != 1:
            raise DatasetError(f"data.derive={data.derive!r} makes inputs {derive.scale}x smaller; pix2pix maps "
                               "same-size images (super-resolution is task 'restore')")
        label_classes = data.label_classes or (len(SCENE_CLASSES) if scenes is not None else None)
        pairs = load_pairs(source, data.resolution, derive=derive, channels=data.channels,
                           input_channels=1 if label_classes else None, max_images=data.max_images,
                           seed=data.subset_seed, xflip=data.xflip, rot90=False)
        if label_classes == "auto":
            label_classes = detect_label_classes(pairs)
            pairs.report.notes.append(f"label maps: {label_classes} classes detected (largest index + 1)")
        pairs.label_classes = label_classes  # read by from_data, which sees only the data object
        return pairs

    @classmethod
    def from_data(cls, model: TranslatorModel, loss: Pix2PixLoss, optim: OptimConfig, resolution: int,
                  data: TrainData) -> Pix2PixTask:
        if not isinstance(data, PairBatches):
            raise ValueError("task 'pix2pix' needs aligned pairs (A|B files, A/ + B/ folders or derived pairs)")
        if data.scale != 1:
            raise ValueError(f"the inputs are {data.scale}x smaller than the targets (lq/gt data); pix2pix maps "
                             "same-size images: use task 'restore' with an upscaler")
        label_classes = getattr(data, "label_classes", None)
        derive = data.derive.spec if data.derive is not None else None
        n = min(8, len(data))
        batch = data.fetch(np.arange(n), torch.Generator().manual_seed(PREVIEW_SEED), torch.device("cpu"))
        task = cls(model, loss, optim, data.input_channels, data.channels, label_classes, derive, batch)
        if label_classes:
            one_hot_labels(batch["input"], label_classes)  # a bad label map fails here, before training
        return task

    def generator_input(self, a: Tensor) -> Tensor:
        return one_hot_labels(a, self.label_classes) if self.label_classes else a

    def optimizers(self, optim: OptimConfig) -> dict[str, torch.optim.Optimizer]:
        return {"G": adam(self.G.parameters(), optim.g_lr, optim),
                "D": adam(self.D.parameters(), optim.d_lr, optim)}

    def phases(self) -> list[Phase]:
        return [Phase("D", "D", 1, self.d_main), Phase("G", "G", 1, self.g_main)]

    def shared(self, inp: StepInputs) -> dict[str, Tensor]:
        a = self.generator_input(inp.batch["input"])                                  # [N, Ca, H, W]
        return {"A": a, "fake": self.G(a)}                                             # fake: [N, C, H, W]

    def d_main(self, inp: StepInputs) -> dict[str, Tensor]:
        a, b, fake = inp.shared["A"], inp.batch["target"], inp.shared["fake"].detach()
        real_s, fake_s = self.D(torch.cat([a, b], 1)), self.D(torch.cat([a, fake], 1))  # [N, 1, h, w]
        loss = self.adv_d(real_s, fake_s)
        return {"D_adv": loss.detach(), "D_real": real_s.mean().detach(), "D_fake": fake_s.mean().detach(),
                "loss": loss}

    def g_main(self, inp: StepInputs) -> dict[str, Tensor]:
        a, b, fake = inp.shared["A"], inp.batch["target"], inp.shared["fake"]
        adv = self.adv_g(self.D(torch.cat([a, fake], 1)))
        l1 = F.l1_loss(fake, b)
        return {"G_adv": adv.detach(), "G_L1": l1.detach(), "loss": adv + self.loss.l1_weight * l1}

    def preview(self, n: int, device: torch.device) -> tuple[np.ndarray, int | None]:
        """Rows of input | output | target for the fixed preview crops, G in eval mode (as inference)."""
        g = self.modules[self.snapshot_modules["G"]]
        a, b = self.preview_batch["input"][:n].to(device), self.preview_batch["target"][:n].to(device)
        out = _eval_outputs(g, lambda: g(self.generator_input(a)))
        shown = show_labels(one_hot_labels(a, self.label_classes).argmax(1)).to(device) if self.label_classes \
            else _as_rgb(a, b.shape[1])
        return to_uint8(torch.stack([shown, out, b], 1).flatten(0, 1)), 3

    def snapshot_meta(self) -> dict[str, Any]:
        return {"directions": ["AtoB"], "derive": self.derive, "label_classes": self.label_classes}

    def after_step(self, batch: int, reduce: Callable[[dict[str, float]], dict[str, float]]) -> None:
        pass

    def stats(self) -> dict[str, float]:
        return {}

    def log_notes(self) -> list[str]:
        return [f"label maps: {self.label_classes} classes, one-hot encoded"] if self.label_classes else []

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass


# ---------------------------------------------------------------------------------------------------------
# CycleGAN


class CycleGANTask:
    name: ClassVar[str] = "cyclegan"
    pipeline: ClassVar[str] = "translate"
    divergence_hint: ClassVar[str] = "Try lower learning rates (optim.g_lr, optim.d_lr)"

    def __init__(self, model: TranslatorModel, loss: CycleGANLoss, optim: OptimConfig, channels: int,
                 preview_batch: dict[str, Tensor] | None = None):
        self.model, self.loss, self.channels = model, loss, channels
        spec = build_translator(model, channels, channels)
        self.G = build_net("cyclegan.generators", net=spec["net"], AtoB=spec["config"], BtoA=spec["config"])
        d = patchgan_config(model, channels)
        self.D = build_net("cyclegan.discriminators", A=d, B=d)
        self.modules: dict[str, nn.Module] = {"G": self.G, "D": self.D}
        self.ema, self.snapshot_modules = optional_ema(self.modules, optim.ema_kimg)
        self.frozen: set[nn.Parameter] = set()
        self.grid_cols: int | None = None
        self.preview_batch = preview_batch
        self.pool_a, self.pool_b = ImagePool(loss.pool_size), ImagePool(loss.pool_size)
        self.adv_d, self.adv_g = adversarial(loss.adversarial)
        self.lr_scale = _lr_scale(loss)

    @staticmethod
    def load_data(data: DataConfig, device: torch.device) -> TrainData:
        """trainA/ + trainB/ (unpaired), random crops and flips drawn independently per domain."""
        return load_unpaired(data.source, data.resolution, channels=data.channels, max_images=data.max_images,
                             seed=data.subset_seed, xflip=data.xflip, rot90=False)

    @classmethod
    def from_data(cls, model: TranslatorModel, loss: CycleGANLoss, optim: OptimConfig, resolution: int,
                  data: TrainData) -> CycleGANTask:
        if not isinstance(data, UnpairedBatches):
            raise ValueError("task 'cyclegan' needs two unpaired domains (trainA/ + trainB/)")
        n = min(8, len(data))
        batch = data.fetch(np.arange(n), torch.Generator().manual_seed(PREVIEW_SEED), torch.device("cpu"))
        return cls(model, loss, optim, data.channels, batch)

    def optimizers(self, optim: OptimConfig) -> dict[str, torch.optim.Optimizer]:
        return {"G": adam(self.G.parameters(), optim.g_lr, optim),
                "D": adam(self.D.parameters(), optim.d_lr, optim)}

    def phases(self) -> list[Phase]:
        return [Phase("D", "D", 1, self.d_main), Phase("G", "G", 1, self.g_main)]

    def shared(self, inp: StepInputs) -> dict[str, Tensor]:
        return {"fake_B": self.G.AtoB(inp.batch["A"]), "fake_A": self.G.BtoA(inp.batch["B"])}  # [N, C, H, W] each

    def d_main(self, inp: StepInputs) -> dict[str, Tensor]:
        a, b = inp.batch["A"], inp.batch["B"]                                          # [N, C, H, W] each
        fake_b = self.pool_b.query(inp.shared["fake_B"].detach(), inp.gen)
        fake_a = self.pool_a.query(inp.shared["fake_A"].detach(), inp.gen)
        d_b = self.adv_d(self.D.B(b), self.D.B(fake_b))
        d_a = self.adv_d(self.D.A(a), self.D.A(fake_a))
        return {"D_A": d_a.detach(), "D_B": d_b.detach(), "loss": d_a + d_b}

    def g_main(self, inp: StepInputs) -> dict[str, Tensor]:
        a, b, lc = inp.batch["A"], inp.batch["B"], self.loss
        fake_b, fake_a = inp.shared["fake_B"], inp.shared["fake_A"]
        adv_ab, adv_ba = self.adv_g(self.D.B(fake_b)), self.adv_g(self.D.A(fake_a))
        cycle_a, cycle_b = F.l1_loss(self.G.BtoA(fake_b), a), F.l1_loss(self.G.AtoB(fake_a), b)  # eq. 2
        total = adv_ab + adv_ba + lc.cycle_weight * (cycle_a + cycle_b)
        losses = {"G_adv_AtoB": adv_ab.detach(), "G_adv_BtoA": adv_ba.detach(), "cycle_A": cycle_a.detach(),
                  "cycle_B": cycle_b.detach()}
        if lc.identity_weight > 0:  # sec. 5.2: G(B) ~ B and F(A) ~ A keep the colours of inputs already in the domain
            idt_b, idt_a = F.l1_loss(self.G.AtoB(b), b), F.l1_loss(self.G.BtoA(a), a)
            total = total + lc.identity_weight * lc.cycle_weight * (idt_a + idt_b)
            losses |= {"identity_A": idt_a.detach(), "identity_B": idt_b.detach()}
        losses["loss"] = total
        return losses

    def preview(self, n: int, device: torch.device) -> tuple[np.ndarray, int | None]:
        """Rows of A | G(A) | B | F(B) for the fixed preview crops, in eval mode."""
        g = self.modules[self.snapshot_modules["G"]]
        a, b = self.preview_batch["A"][:n].to(device), self.preview_batch["B"][:n].to(device)
        fake_b = _eval_outputs(g, lambda: g.AtoB(a))
        fake_a = _eval_outputs(g, lambda: g.BtoA(b))
        return to_uint8(torch.stack([a, fake_b, b, fake_a], 1).flatten(0, 1)), 4

    def snapshot_meta(self) -> dict[str, Any]:
        return {"directions": ["AtoB", "BtoA"], "derive": None, "label_classes": None}

    def after_step(self, batch: int, reduce: Callable[[dict[str, float]], dict[str, float]]) -> None:
        pass

    def stats(self) -> dict[str, float]:
        return {}

    def log_notes(self) -> list[str]:
        return []

    def extra_state(self) -> dict[str, Any]:
        return {"pool_A": self.pool_a.state(), "pool_B": self.pool_b.state()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        device = next(self.G.parameters()).device
        self.pool_a.load(state.get("pool_A", torch.zeros(0)), device)
        self.pool_b.load(state.get("pool_B", torch.zeros(0)), device)
