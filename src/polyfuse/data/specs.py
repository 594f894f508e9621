"""What a modality and a task are: the vocabulary every other module speaks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from polyfuse.errors import ConfigError

ModalityKind = Literal["tabular", "image", "bag", "sequence", "text"]
TaskType = Literal["binary", "multiclass", "multilabel", "survival", "regression"]
SurvivalHead = Literal["discrete", "cox"]

MODALITY_KINDS: tuple[str, ...] = get_args(ModalityKind)
TASK_TYPES: tuple[str, ...] = get_args(TaskType)


@dataclass(frozen=True)
class Backbone:
    """A pretrained image backbone that a model fine-tunes as the modality's encoder
    (`encoder: {trainable: true}`); `polyfuse.embed.images.BackboneNet` builds it."""

    name: str
    weights: str
    size: tuple[int, ...] | None = None
    normalize: str = "auto"


@dataclass(frozen=True)
class ModalitySpec:
    """One modality: its name, kind and per-sample shape.

    `shape` is the shape of one present sample, without the batch axis:
    tabular `(F,)`; image `(C, H, W)` or `(C, D, H, W)`; bag `(D,)`, the width of one instance
    (the number of instances varies); sequence `(C,)`, the channels per time step; text `()`,
    where `vocab_size` says how many hashed token ids the text tokenizer produces. An image
    modality may name the pretrained `backbone` its model fine-tunes.
    """

    name: str
    kind: ModalityKind
    shape: tuple[int, ...]
    feature_names: tuple[str, ...] | None = None
    vocab_size: int = 0
    backbone: Backbone | None = None

    def __post_init__(self) -> None:
        if not self.name or "." in self.name:
            raise ConfigError(
                f"modality name {self.name!r}: use a non-empty name without '.' "
                "(it keys the model's per-modality modules)"
            )
        if self.kind not in MODALITY_KINDS:
            raise ConfigError(
                f"modality '{self.name}': unknown kind '{self.kind}'; use one of {MODALITY_KINDS}"
            )
        expected = {"tabular": (1,), "image": (3, 4), "bag": (1,), "sequence": (1,), "text": (0,)}
        if len(self.shape) not in expected[self.kind]:
            raise ConfigError(
                f"modality '{self.name}' of kind {self.kind} cannot have shape {self.shape}"
            )
        if self.backbone is not None and self.kind != "image":
            raise ConfigError(f"modality '{self.name}': only an image has a backbone")
        if self.kind == "text" and self.vocab_size < 2:
            raise ConfigError(f"text modality '{self.name}' needs vocab_size >= 2")

    @property
    def width(self) -> int:
        """Channels of one element: features, image channels, instance or step width."""
        return self.vocab_size if self.kind == "text" else self.shape[0]

    @property
    def spatial_dims(self) -> int:
        """2 or 3 for images, 0 otherwise."""
        return len(self.shape) - 1 if self.kind == "image" else 0

    @property
    def is_tokens(self) -> bool:
        """Whether a batch holds a variable number of tokens with a `token_mask`."""
        return self.kind in ("bag", "sequence", "text")


@dataclass(frozen=True)
class TaskSpec:
    """One prediction target.

    `classes` names the classes (binary, multiclass) or the labels (multilabel). Survival tasks
    predict either `n_bins` discrete-time hazards (the HEALNet/MCAT default) or one Cox log-risk;
    `time_unit` (days, weeks, months, years, or None when unknown) names their times.
    """

    name: str
    type: TaskType
    classes: tuple[str, ...] = ()
    survival_head: SurvivalHead = "discrete"
    n_bins: int = 4
    time_unit: str | None = None

    def __post_init__(self) -> None:
        if self.type not in TASK_TYPES:
            raise ConfigError(f"task '{self.name}': unknown type '{self.type}'; use {TASK_TYPES}")
        if self.type == "binary" and len(self.classes) not in (0, 2):
            raise ConfigError(f"binary task '{self.name}' needs 2 classes, got {self.classes}")
        if self.type in ("multiclass", "multilabel") and len(self.classes) < 2:
            raise ConfigError(f"{self.type} task '{self.name}' needs at least 2 classes")
        if self.type == "survival" and self.survival_head == "discrete" and self.n_bins < 2:
            raise ConfigError(f"survival task '{self.name}' needs n_bins >= 2")

    @property
    def out_dim(self) -> int:
        """Number of logits the head produces."""
        if self.type in ("multiclass", "multilabel"):
            return len(self.classes)
        if self.type == "survival" and self.survival_head == "discrete":
            return self.n_bins
        return 1

    @property
    def target_width(self) -> int:
        """Columns of the target tensor: (time, event) for survival, labels for multilabel."""
        if self.type == "survival":
            return 2
        if self.type == "multilabel":
            return len(self.classes)
        return 1
