"""Pipeline configuration, the schema only: pydantic models, one typed config per stage (each stage's class lives
with its stage). A leaf: it imports no stage; reading YAML and validating against the stage registry is
edgekd.core.loader, turning pydantic errors into YAML-line messages is edgekd.core.validation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgekd.core.rundir import SAFE_NAME


class Strict(BaseModel):
    """Base for every config block: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=False)


ADDED_LATER = "added_later"


def added_later(*args: Any, **kwargs: Any) -> Any:
    """A ``Field`` for an option added after stages were already cached: at its default it stays out of cache keys
    (:func:`key_dump`), so runs and resume checkpoints made before the option existed stay valid."""
    return Field(*args, json_schema_extra={ADDED_LATER: True}, **kwargs)


def _later_defaults(value: Any) -> Any:
    """A pydantic ``exclude`` tree of the ``added_later`` fields that hold their default, through nested models,
    lists and dicts of models; None where there is nothing to leave out."""
    if isinstance(value, BaseModel):
        out = {}
        for name, field in type(value).model_fields.items():
            v = getattr(value, name)
            extra = field.json_schema_extra
            if isinstance(extra, dict) and extra.get(ADDED_LATER) and v == field.get_default(call_default_factory=True):
                out[name] = True
            elif (sub := _later_defaults(v)) is not None:
                out[name] = sub
        return out or None
    if isinstance(value, (list, tuple)):
        items = enumerate(value)
    elif isinstance(value, dict):
        items = value.items()
    else:
        return None
    out = {k: sub for k, v in items if (sub := _later_defaults(v)) is not None}
    return out or None


def key_dump(cfg: BaseModel, exclude: set[str] = frozenset()) -> dict:
    """The config as its cache key hashes it: ``model_dump(mode="json")`` without ``exclude`` (top-level names) and
    without the ``added_later`` fields that hold their default."""
    tree = _later_defaults(cfg) or {}
    tree.update(dict.fromkeys(exclude, True))
    return cfg.model_dump(mode="json", exclude=tree)


class ModelSpec(Strict):
    """A model from the zoo (``name``), the user's own class (``import: package.module:Class``), timm or torchvision
    by name, or a saved Hugging Face folder; ``pretrained`` loads a local weights file into it."""

    name: str | None = Field(None, description="a zoo model's name")
    import_: str | None = Field(
        None,
        alias="import",
        description="a user model as package.module:Class (called with in_channels, num_classes, kwargs)",
    )
    hf: str | None = added_later(
        None,
        description="a folder holding a Hugging Face image-classification model (save_pretrained: config.json + "
        "weights); read locally, never downloaded",
    )
    timm: str | None = added_later(
        None,
        description="a timm model name (timm.create_model(name, in_chans=channels, num_classes=classes, **kwargs)); "
        "needs pip install 'edgekd[timm]'",
    )
    torchvision: str | None = added_later(
        None,
        description="a torchvision model name (torchvision.models.get_model(name, weights=None, "
        "num_classes=classes, **kwargs)); RGB data only",
    )
    pretrained: str | None = added_later(
        None,
        description="a local weights file loaded into the model before it trains (.pth, .pth.tar, .safetensors, "
        "Lightning .ckpt); a head with another class count is replaced. Never downloaded",
    )
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for the model's constructor")
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        if sum(v is not None for v in (self.name, self.import_, self.hf, self.timm, self.torchvision)) != 1:
            raise ValueError(
                "give exactly one of 'name' (a zoo model), 'import' (package.module:Class), 'timm' or 'torchvision' "
                "(a model name in that library) or 'hf' (a saved Hugging Face model folder)"
            )
        if self.name is not None:
            from edgekd.models import MODELS  # the package registers the zoo

            if self.name not in MODELS:
                raise ValueError(MODELS.unknown_message(self.name))
        if self.pretrained is not None and self.hf is not None:
            raise ValueError("'pretrained' does not apply to 'hf': the folder holds the model's weights")
        return self

    def as_dict(self) -> dict:
        spec = {"name": self.name, "import": self.import_, "kwargs": self.kwargs}
        later = {"hf": self.hf, "timm": self.timm, "torchvision": self.torchvision, "pretrained": self.pretrained}
        return {**spec, **{k: v for k, v in later.items() if v is not None}}


class TrainConfig(Strict):
    epochs: int = Field(10, ge=1, le=10_000, description="training epochs")
    batch_size: int = Field(64, ge=1, le=65_536, description="images per batch")
    optimizer: Literal["adamw", "adam", "sgd"] = Field("adamw", description="adamw or sgd")
    lr: float = Field(2e-3, gt=0, le=10, description="peak learning rate")
    weight_decay: float = Field(5e-4, ge=0, le=1, description="optimiser weight decay")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    schedule: Literal["cosine", "step", "constant"] = Field("cosine", description="learning-rate schedule")
    step_size: int = Field(10, ge=1, description="epochs between lr drops (schedule: step)")
    gamma: float = Field(0.1, gt=0, le=1, description="step schedule: learning-rate factor at each step")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="label smoothing of the hard-label loss")
    channels_last: bool = Field(
        False, description="train in channels-last memory layout (faster convolutions on CPU); saved weights unchanged"
    )


class AugmentConfig(Strict):
    enabled: bool = Field(True, description="augment training images")
    max_shift: float = Field(2.0, ge=0, le=64, description="pixels")
    max_rotate_deg: float = Field(10.0, ge=0, le=180, description="largest random rotation, degrees")
    crop_scale: tuple[float, float] = added_later(
        (1.0, 1.0),
        description="random-resized crop: the share of the image area kept, drawn in this range (aspect 3/4 to "
        "4/3, at a random place), then resized back; (1, 1) is off. Photos: (0.35, 1)",
    )
    hflip: bool = added_later(False, description="mirror a random half of the training images left to right")

    @model_validator(mode="after")
    def _crop(self) -> AugmentConfig:
        lo, hi = self.crop_scale
        if not 0.05 <= lo <= hi <= 1:
            raise ValueError("crop_scale must be (low, high) with 0.05 <= low <= high <= 1")
        return self


class TextDataConfig(Strict):
    """The text-embedding task's data block: real English sentences, split train/val/test by a seeded hash
    (edgekd.text.corpus)."""

    source: Literal["stdlib", "file"] = Field(
        "stdlib", description="stdlib (sentences from Python's own documentation) or file (one sentence per line)"
    )
    path: str | None = Field(None, description="source: file — a .txt (one sentence per line) or .jsonl file")
    val_fraction: float = Field(
        0.1, gt=0, lt=0.5, description="share of sentences held out for validation (seeded hash split)"
    )
    test_fraction: float = Field(0.1, gt=0, lt=0.5, description="share of sentences held out for test")
    split_seed: int = Field(0, description="the split's own seed, independent of the pipeline seed")
    max_sentences: int | None = Field(None, ge=30, description="a seeded subsample of at most this many sentences")
    on_bad_line: Literal["skip", "fail"] = Field("skip", description="non-UTF-8 / malformed lines: count or stop")
    transfer_packages: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] = Field(
        default_factory=list,
        description="installed top-level packages whose docstrings are added to the training split only (read from "
        "their files, never imported)",
    )

    @model_validator(mode="after")
    def _path(self) -> TextDataConfig:
        if self.source == "file" and not self.path:
            raise ValueError("text source 'file' needs 'path' (a .txt or .jsonl file)")
        return self


class DataConfig(Strict):
    # none: no data stage; the pipeline's own stages bring their inputs
    source: Literal["digits", "folder", "list", "npz", "none"] = Field(
        "digits",
        description="digits (bundled, 1,797 real 8x8 images), folder (path/<class>/<image>, or already split: "
        "path/{train,val,test}/<class>/<image>), list (a .csv or .json of path,label[,split]) or npz",
    )
    path: str | None = Field(
        None, description="folder or .npz file (x, y; optional x_val/y_val, x_test/y_test, labels)"
    )
    image_size: int = Field(32, ge=4, le=1024, description="images are resized to this square size")
    channels: Literal[1, 3] | None = Field(
        None, description="1 = greyscale, 3 = RGB (default: 1 for digits, 3 for a folder)"
    )
    val_fraction: float = Field(
        0.15, gt=0, lt=0.5, description="stratified, seeded share of the whole data set for validation"
    )
    test_fraction: float = Field(
        0.2, gt=0, lt=0.5, description="stratified, seeded share of the whole data set for test"
    )
    split_seed: int = Field(0, description="the split's own seed, independent of the pipeline seed")
    augment: AugmentConfig = Field(
        default_factory=AugmentConfig, description="light random shift and rotation of training images"
    )
    fit: Literal["stretch", "center_crop", "letterbox"] = added_later(
        "stretch",
        description="how an image of another aspect becomes image_size x image_size: stretch (resize both sides), "
        "center_crop (shorter side to image_size, centre cut) or letterbox (longer side to image_size, centred on "
        "black); recorded in exported models' metadata",
    )
    normalization: Literal["auto", "train_split", "pretrained"] = added_later(
        "auto",
        description="mean/std when data.mean/std are not given: train_split (the training images' statistics), "
        "pretrained (those the first timm/torchvision model with pretrained weights was trained with, ImageNet's "
        "for most) or auto (pretrained when there is such a model, else train_split)",
    )
    mean: list[float] | None = Field(None, description="per-channel normalisation mean (default: from the train split)")
    std: list[float] | None = Field(None, description="per-channel normalisation std (default: from the train split)")
    labels: list[str] | None = Field(None, description="class names (default: folder names, or 0..K-1)")
    on_corrupt: Literal["fail", "skip"] = Field("fail", description="unreadable images: fail, or skip with a warning")

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.source in ("folder", "list", "npz") and not self.path:
            raise ValueError(f"data source '{self.source}' needs 'path'")
        if self.source in ("folder", "list") and self.channels is None:
            self.channels = 3
        if self.source == "digits" and self.channels not in (None, 1):
            raise ValueError("the digits data set has 1 channel")
        if self.std is not None and any(s <= 0 for s in self.std):
            raise ValueError("every std value must be > 0")
        return self

    def model_io(self) -> tuple[int, int]:
        """(input channels, classes) for building models at validate time, before the data stage has read anything:
        what the config says, else the digits' 1 channel and 10 classes (the data stage finds the real ones)."""
        return self.channels or 1, len(self.labels) if self.labels else 10


class NotMine:
    """StageConfig.model_spec's answer for an artifact the stage does not make."""


NOT_MINE = NotMine()


class StageConfig(Strict):
    """Fields every stage has. ``name`` defaults to the stage kind and names its output folder."""

    stage: str
    name: str | None = Field(None, pattern=SAFE_NAME, description="names the stage's output folder")
    enabled: bool = True

    @property
    def id(self) -> str:
        return self.name or self.stage

    def model_spec(self, artifact: str, spec_before: Callable[[str], dict | None]) -> dict | NotMine | None:
        """The model spec of the torch artifact ``artifact`` when this stage makes it (None: made, spec unknown),
        else NOT_MINE. ``spec_before(name)`` resolves a name as the stages before this one make it (a stage that
        changes a model in place, like pruning, keeps the layer names of the model it starts from)."""
        return NOT_MINE

    def key_files(self) -> list[str]:
        """Files outside the run the stage reads (a checkpoint): their content is part of its cache key."""
        return []


class TrackingConfig(Strict):
    """Experiment tracking (edgekd/core/tracking.py); not part of any cache key, so turning it on re-runs nothing."""

    backend: Literal["none", "mlflow", "tensorboard"] = Field("none", description="none, mlflow or tensorboard")
    dir: str | None = Field(None, description="default: <run dir>/mlruns (mlflow) or <run dir>/tensorboard")
    uri: str | None = Field(None, description="mlflow tracking URI (sqlite:///..., http://...); default: file store")
    experiment: str | None = Field(None, description="mlflow experiment name; default: the pipeline name")


IMAGE, TEXT = "image-classification", "text-embedding"
TASKS = (IMAGE, TEXT)
DATA_CONFIGS: dict[str, type[Strict]] = {IMAGE: DataConfig, TEXT: TextDataConfig}


class PipelineConfig(Strict):
    name: str = Field("pipeline", pattern=SAFE_NAME, description="names the run folder: runs/<name>")
    task: Literal["image-classification", "text-embedding"] = Field(
        IMAGE, description="what the models do; picks the data block's keys and each stage's form"
    )
    seed: int = Field(
        0, ge=0, le=2**31 - 1, description="seeds weight init, batch order, augmentation and calibration picks"
    )
    output_dir: str | None = Field(None, description="run directory (default runs/<name>; -o overrides)")
    device: Literal["cpu", "cuda", "auto"] = Field(
        "cpu", description="where training runs: cpu, cuda, or auto (CUDA when present)"
    )
    data: DataConfig | TextDataConfig = Field(
        default_factory=DataConfig,
        description="the data every stage reads: an image data set (task image-classification) or sentences "
        "(text-embedding); the keys follow the task",
    )
    tracking: TrackingConfig = Field(
        default_factory=TrackingConfig, description="experiment tracking (MLflow / TensorBoard), off by default"
    )
    stages: list[Any] = Field(min_length=1, description="the stages, run in the order written")

    @model_validator(mode="before")
    @classmethod
    def _data_of_task(cls, doc: Any) -> Any:
        """The data block is read with the task's class (the loader does the same, with errors at their line)."""
        if isinstance(doc, dict) and isinstance(doc.get("data"), dict):
            kind = DATA_CONFIGS.get(doc.get("task", IMAGE))
            if kind is not None:
                doc = {**doc, "data": kind.model_validate(doc["data"])}
        return doc

    @model_validator(mode="after")
    def _data_fits_task(self) -> PipelineConfig:
        if not isinstance(self.data, DATA_CONFIGS[self.task]):
            raise ValueError(f"task '{self.task}' needs a {DATA_CONFIGS[self.task].__name__} data block")
        return self

    def stage(self, stage_id: str) -> StageConfig | None:
        return next((s for s in self.stages if s.id == stage_id), None)

    def spec_of(self, artifact: str, before: StageConfig) -> dict | None:
        """Spec of the torch artifact as the last enabled stage before ``before`` makes it (None: unknown). Used by
        validate-time checks that must build a model another stage makes; each stage answers for itself."""
        spec = None
        for st in self.stages:
            if st is before:
                break
            if st.enabled:
                found = st.model_spec(artifact, lambda name, st=st: self.spec_of(name, st))
                spec = spec if found is NOT_MINE else found
        return spec


# --------------------------------------------------------------------------- loading
