"""The studies (DeepEfficientNet's seeds, baselines, attention variants, ablations, architecture zoo, class
imbalance, PatchCamelyon) declared as data: each ``Study`` lists its runs for a profile (``PlannedRun``s) and,
where a later stage depends on results, computes that stage from the earlier records. ``run_study`` trains or
reuses them; ``utils.sweep`` plans the same declarations without training. The seed summaries are below."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .comparisons import Pair
from .experiment import InvalidRunRecord, check_run_record, plan_run, run_training
from .profiles import Profile, as_profile, default_device
from .recipes import batch_scaled, large_batch_holds, train_config
from .training import resolve_amp


@dataclass(frozen=True)
class PlannedRun:
    """One run of a study: ``run_training``'s arguments, and the fields its record carries in the study."""
    label: str
    model: str
    seed: int
    dataset: str = "bloodmnist"
    arguments: dict = field(default_factory=dict)  # model_kwargs, tag, labels, train_limit, TrainConfig changes
    fields: dict = field(default_factory=dict)     # e.g. {"stage": "screen"}


@dataclass(frozen=True)
class Study:
    name: str
    runs: Callable[[Profile], list[PlannedRun]]
    # From the records of ``runs`` (labels and fields added), the runs of the next stage; None: one stage.
    next_stage: Callable[[Profile, list[dict]], list[PlannedRun]] | None = None


def train_planned(planned: PlannedRun, profile: Profile) -> dict:
    """The run's record (trained, or reused where stored) with the study's label and fields."""
    record = run_training(planned.model, planned.dataset, profile, planned.seed, **planned.arguments)
    return dict(record, label=planned.label, **planned.fields)


def walk_stages(study: Study, profile: Profile, records_of: Callable[[list[PlannedRun]], list[dict | None]]) -> list:
    """``records_of`` the study's first stage, then of its next stage where every first-stage record is there
    (None: not stored)."""
    records = records_of(study.runs(profile))
    if study.next_stage is not None and all(r is not None for r in records):
        records += records_of(study.next_stage(profile, records))
    return records


def trains_here(profile: Profile) -> bool:
    """Whether a notebook or summary may train a study's missing runs here: not the full profile on a CPU, where a
    study is hours to days of training; there the stored runs are shown and the missing ones named with the command
    that trains them in the background (``utils.sweep``)."""
    return not (profile.name == "full" and default_device().type == "cpu")


def run_study(study: Study, profile: Profile | str) -> list[dict]:
    """Every run of ``study`` under ``profile``, stage by stage, trained or reused; where the profile does not train
    here (``trains_here``), the stored runs only, with the missing ones named on stdout."""
    profile = as_profile(profile)
    if not trains_here(profile):
        records, missing = stored_runs(study, profile)
        if missing:
            print(missing_message(study, profile, missing))
        return records
    return walk_stages(study, profile, lambda runs: [train_planned(p, profile) for p in runs])


# run_training's arguments that do not name a run (where the data comes from, resume, extra record fields).
RUN_ONLY_ARGS = set(inspect.signature(run_training).parameters) - set(inspect.signature(plan_run).parameters)


def planned_name(planned: PlannedRun, profile: Profile) -> str:
    """The name of the run ``planned`` trains or reuses under ``profile``."""
    return _plan(planned, profile).name


def plan_of(kwargs: dict):
    """The ``RunPlan`` of one run's ``run_training`` arguments (a sweep's job): its name and paths."""
    return plan_run(**{k: v for k, v in kwargs.items() if k not in RUN_ONLY_ARGS})


def _plan(planned: PlannedRun, profile: Profile):
    naming = {k: v for k, v in planned.arguments.items() if k not in RUN_ONLY_ARGS}
    return plan_run(planned.model, planned.dataset, profile.name, planned.seed, **naming)


def stored_record(planned: PlannedRun, profile: Profile) -> tuple[str, dict | None]:
    """The run's name, and its record with the study's label and fields if a valid one is stored."""
    run = _plan(planned, profile)
    try:
        return run.name, dict(check_run_record(run.json_path), label=planned.label, **planned.fields)
    except (FileNotFoundError, InvalidRunRecord):
        return run.name, None  # missing, or not to be trusted: run_training moves a bad record aside and trains


def sweep_command(study: Study, profile: Profile) -> str:
    return f"python -m utils.sweep --profile {profile.name} --only {study.name}"


def missing_message(study: Study, profile: Profile, missing: list[str]) -> str:
    """Every missing run by name, and the command that trains them."""
    return (f"{len(missing)} run(s) of the {study.name} study are not stored in the {profile.name} profile "
            f"({', '.join(missing)}): {sweep_command(study, profile)} trains them")


def stored_runs(study: Study, profile: Profile | str) -> tuple[list[dict], list[str]]:
    """The stored records of ``study`` under ``profile`` (a next stage once its first stage is all stored), and the
    names of its runs that are not stored; nothing is trained."""
    profile = as_profile(profile)
    missing: list[str] = []

    def read(runs: list[PlannedRun]) -> list[dict | None]:
        found = [stored_record(p, profile) for p in runs]
        missing.extend(name for name, record in found if record is None)
        return [record for _, record in found]

    return [r for r in walk_stages(study, profile, read) if r is not None], missing


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label.lower()).strip("_")


def _kwargs(model_kwargs: dict | None) -> dict:
    return {"model_kwargs": model_kwargs} if model_kwargs else {}


# --- DeepEfficientNet (notebook 03; seed 0 is the run notebook 06 explains and the other studies reuse) ----------
DEEP_EFFICIENTNET = Study("deep_efficientnet", lambda profile: [
    PlannedRun("DeepEfficientNet", "deep_efficientnet", seed) for seed in profile.seeds])

# The full-budget issue's target for DeepEfficientNet, mean official test accuracy over the full profile's seeds,
# and the accuracy it aims at beyond it.
DEEP_EFFICIENTNET_TARGET = 0.97
DEEP_EFFICIENTNET_AIM = 0.98

# --- Baselines (notebook 02, and 08); names and tags match `utils.train`'s runs ----------------------------------
BASELINES = {"SimpleCNN": ("simple_cnn", {}), "ResNet-18": ("resnet18", {}),
             "EfficientNet-Lite0 (scratch)": ("efficientnet_lite0", {}),
             "EfficientNet-Lite0 (ImageNet)": ("efficientnet_lite0", {"pretrained": True}),
             "DeepEfficientNet": ("deep_efficientnet", {})}
BASELINE_STUDY = Study("baselines", lambda profile: [
    PlannedRun(label, model, seed, arguments=_kwargs(kwargs))
    for label, (model, kwargs) in BASELINES.items() for seed in profile.seeds])

# --- Attention variants on the B0 backbone (notebook 04) ----------------------------------------------------------
ATTENTION_VARIANTS = {"none": "efficientnet_b0", "SE": "efficientnet_b0_se", "CBAM": "efficientnet_b0_cbam",
                      "MSFF": "efficientnet_b0_msff"}
ATTENTION_STUDY = Study("attention", lambda profile: [
    PlannedRun(label, model, seed, arguments={"tag": f"attention_{_slug(label)}", **profile.budget("attention")})
    for label, model in ATTENTION_VARIANTS.items() for seed in profile.seeds])

# --- The same attention variants on the fast backbone (notebook 04): SimpleCNN with one constructor argument changed,
# its recipe otherwise the plain SimpleCNN's (the "none" row is the baselines' SimpleCNN run), over more seeds.
SMALL_ATTENTION_VARIANTS = {"none": {}, "SE": {"attention": "se"}, "CBAM": {"attention": "cbam"},
                            "MSFF": {"fusion_stages": (0, 1, 2)}}


def _small_attention_runs(profile: Profile) -> list[PlannedRun]:
    seeds = profile.small_backbone_seeds or profile.seeds
    return [PlannedRun(label, "simple_cnn", seed,
                       arguments={"tag": f"simple_cnn_{_slug(label)}", "model_kwargs": kwargs} if kwargs else {})
            for label, kwargs in SMALL_ATTENTION_VARIANTS.items() for seed in seeds]


SMALL_ATTENTION_STUDY = Study("attention_simple_cnn", _small_attention_runs)

# --- Ablations (notebook 05): each entry changes one thing from the DeepEfficientNet recipe -----------------------
ALL_REGULARISATION_OFF = "all regularisation off (label smoothing, dropout, stochastic depth, weight decay)"
ABLATIONS: dict[str, dict] = {
    "recipe": {},
    "SE off": {"model_kwargs": {"se": False}},
    "label smoothing off": {"label_smoothing": 0.0},
    "dropout off": {"dropout": 0.0},
    "stochastic depth off": {"drop_path": 0.0},
    ALL_REGULARISATION_OFF: {"label_smoothing": 0.0, "dropout": 0.0, "drop_path": 0.0, "weight_decay": 0.0},
    "step schedule": {"schedule": "step"},
    "constant schedule": {"schedule": "constant"},
    "one-cycle schedule": {"schedule": "onecycle"},
    "no augmentation": {"augment": "none"},
    # The recipe's augmentation until 50-epoch validation chose "basic" (TrainConfig.augment): PREVIOUS_RECIPE.
    "affine + colour augmentation": {"augment": "full"},
    "SGD (lr 0.05, weight decay 5e-4)": {"optimizer": "sgd", "lr": 0.05, "weight_decay": 5e-4},
    "AMP off (fp32)": {"amp": "off"},
    "AMP bf16": {"amp": "bf16"},
    "batch 64": {"batch_size": 64},
    "batch 256 (lr 4e-3)": {"batch_size": 256, "lr": 4e-3},
}
# The row that is the recipe as it was before 50-epoch validation chose flips and turns only. At a short budget its runs
# keep the names that recipe's runs were trained under (no tag). At the full budget that name belongs to the previous
# recipe's H100 runs in bfloat16 (../shared/gpu-runs/dff1171/runs, copied unchanged into results/runs): they stay, as
# the row PREVIOUS_RECIPE_RUNS, and the ablation row itself is trained like the others (CPU, float32), tagged (#35).
PREVIOUS_RECIPE = "affine + colour augmentation"
PREVIOUS_RECIPE_RUNS = "affine + colour (the previous recipe's H100 runs)"
# A row whose label names every change it makes keeps the run tag of its first, shorter label, so its runs keep
# their names.
ABLATION_TAGS = {ALL_REGULARISATION_OFF: "all_regularisation_off", "SGD (lr 0.05, weight decay 5e-4)": "sgd", "batch 256 (lr 4e-3)": "batch_256",
                 PREVIOUS_RECIPE: "affine_colour"}


def effective_ablations(recipe_amp: torch.dtype | None) -> dict[str, dict]:
    """The ablations that change something where the recipe's ``amp="auto"`` resolves to ``recipe_amp``:
    "AMP off (fp32)" is the recipe itself on a CPU, "AMP bf16" the recipe itself on a bf16 GPU."""
    return {label: change for label, change in ABLATIONS.items()
            if "amp" not in change or resolve_amp(change["amp"], _device_of(change["amp"])) != recipe_amp}


def _device_of(amp: str) -> torch.device:
    # Explicit amp settings resolve the same on every device; only "auto" needs the real one.
    return default_device() if amp == "auto" else torch.device("cpu")


def _is_the_recipe(change: dict, profile: Profile) -> bool:
    """Whether an ablation's change is what the profile's recipe already does (then it has no row)."""
    if change.get("model_kwargs"):
        return False
    return train_config("deep_efficientnet", "bloodmnist", profile, **change) == \
        train_config("deep_efficientnet", "bloodmnist", profile)


def _ablation_runs(profile: Profile) -> list[PlannedRun]:
    budget = profile.budget("ablations")
    runs = []
    for label, change in effective_ablations(resolve_amp("auto", default_device())).items():
        if change and _is_the_recipe(change, profile):
            continue
        # With the profile's own budget the unchanged recipe is notebook 03's run: reused, not retrained.
        tagged = (change or budget) and not (label == PREVIOUS_RECIPE and budget)
        tag = {"tag": f"ablation_{ABLATION_TAGS.get(label, _slug(label))}"} if tagged else {}
        runs += [PlannedRun(label, "deep_efficientnet", seed, arguments={**tag, **budget, **change})
                 for seed in profile.seeds]
        if label == PREVIOUS_RECIPE and not budget:
            runs += [PlannedRun(PREVIOUS_RECIPE_RUNS, "deep_efficientnet", seed, arguments=change)
                     for seed in profile.seeds]
    return runs


ABLATION_STUDY = Study("ablations", _ablation_runs)

# --- Architecture zoo (notebook 08): each zoo model with the shared recipe (same runs as `utils.train`) -----------
ZOO = {"CNN + CBAM": "cnn_attention", "VGG": "vgg", "Inception": "inception",
       "Autoencoder (pre-trained)": "autoencoder", "DeepCMorph-lite": "deepcmorph_lite"}
ZOO_STUDY = Study("zoo", lambda profile: [
    PlannedRun(label, model, seed) for label, model in ZOO.items() for seed in profile.seeds])

# --- Class imbalance (notebook 08): strategies, each a change to the SimpleCNN recipe ------------------------------
IMBALANCE_STRATEGIES = {
    "cross_entropy": ("Cross-entropy", {}),
    "class_weighted": ("Class-weighted CE", {"class_weighted": True}),
    "balanced_sampling": ("Class-balanced sampling", {"balanced_sampling": True}),
    "focal": ("Focal loss", {"loss": "focal"}),
}
IMBALANCE_MODEL = "simple_cnn"
IMBALANCE_STUDY = Study("imbalance", lambda profile: [
    PlannedRun(label, IMBALANCE_MODEL, seed, arguments={"tag": f"imbalance_{key}", "labels": {"imbalance": key},
                                                        **profile.budget("imbalance"), **change})
    for key, (label, change) in IMBALANCE_STRATEGIES.items() for seed in profile.seeds])

# --- PatchCamelyon (notebook 07) ------------------------------------------------------------------------------------
PCAM_MODELS = {
    "EfficientNet-B0": ("efficientnet_b0", {}), "B0 + SE": ("efficientnet_b0_se", {}),
    "B0 + CBAM": ("efficientnet_b0_cbam", {}), "B0 + MSFF": ("efficientnet_b0_msff", {}),
    "DeepEfficientNet": ("deep_efficientnet", {}),
    "Lite0 (scratch)": ("efficientnet_lite0", {}), "Lite0 (ImageNet)": ("efficientnet_lite0", {"pretrained": True}),
    # ImageNet features were learnt at 224x224; 1.5x (144x144) costs 2.5x the compute of 96x96 on 2 cores.
    "Lite0 (ImageNet, 1.5x input)": ("efficientnet_lite0", {"pretrained": True, "input_scale": 1.5}),
}
FINAL_SUFFIX = " (whole subset)"


def _pcam_runs(label: str, budget: dict, stage: str, profile: Profile) -> list[PlannedRun]:
    model, kwargs = PCAM_MODELS[label]
    return [PlannedRun(label + (FINAL_SUFFIX if stage == "final" else ""), model, seed, "pcam",
                       {**_kwargs(kwargs), **budget}, {"stage": stage}) for seed in profile.seeds]


def _pcam_screen(profile: Profile) -> list[PlannedRun]:
    """Each of the profile's PCAM_MODELS (its budget's "pcam_models", None = all) under its screen budget."""
    labels = profile.budget("pcam_models") or tuple(PCAM_MODELS)
    return [p for label in labels for p in _pcam_runs(label, profile.budget("pcam_screen"), "screen", profile)]


def _pcam_final(profile: Profile, screen: list[dict]) -> list[PlannedRun]:
    """With a final budget: the screen's best model on validation AUC, retrained on all training patches."""
    budget = profile.budget("pcam_final")
    if budget is None:
        return []
    winner = max(screen, key=lambda r: r["val"]["auc"])["label"]
    return _pcam_runs(winner, budget, "final", profile)


PCAM_STUDY = Study("pcam", _pcam_screen, _pcam_final)

# The targets of the PatchCamelyon issue on our test split, with 7.3% of PCam's training patches.
PCAM_TARGETS = {"auc": 0.965, "acc": 0.90}
# Training patches against validation AUC for one model at one budget per profile: how far does the 7.3% budget
# fall short, and how fast does more data help?
PCAM_SCALING_MODEL = "Lite0 (ImageNet)"


def _pcam_scaling_runs(profile: Profile) -> list[PlannedRun]:
    model, kwargs = PCAM_MODELS[PCAM_SCALING_MODEL]
    budget = dict(profile.budget("pcam_scaling"))
    limits = budget.pop("train_limits")
    return [PlannedRun(PCAM_SCALING_MODEL, model, seed, "pcam", {"model_kwargs": kwargs, "train_limit": limit, **budget})
            for limit in limits for seed in profile.seeds]


PCAM_SCALING_STUDY = Study("pcam_scaling", _pcam_scaling_runs)

# --- The BloodMNIST recipe search (notebook 05): one change at a time from the recipe, screened on seed 0 on
# validation, the winner confirmed over the profile's seeds. Short budgets do not predict the full one (the 4-epoch
# ablations disagree with the 50-epoch runs of ../shared/gpu-runs/dff1171 on most levers), so the cpu profile has
# no search (its budget is None); smoke runs it end to end; the full profile runs it (a GPU makes it take hours, not days).
def _epochs_times(factor: int) -> Callable[[Profile], dict]:
    return lambda profile: {"epochs": factor * train_config("deep_efficientnet", "bloodmnist", profile).epochs}


def _batch_times(factor: int, **change) -> Callable[[Profile], dict]:
    """A batch ``factor`` times the profile's, with the larger-batch rule (recipes.batch_scaled) from there."""
    def changes(profile: Profile) -> dict:
        base = train_config("deep_efficientnet", "bloodmnist", profile)
        return {**batch_scaled(factor * base.batch_size, base=base), **change}
    return changes


RECIPE_SEARCH: dict[str, Callable[[Profile], dict]] = {
    "recipe": lambda profile: {},
    "no augmentation": lambda profile: {"augment": "none"},
    "affine + colour augmentation": lambda profile: {"augment": "full"},
    "colour augmentation": lambda profile: {"augment": "color"},
    "2x epochs": _epochs_times(2),
    "2x input": lambda profile: {"model_kwargs": {"input_scale": 2.0}},
    "EMA 0.999": lambda profile: {"ema_decay": 0.999},
    # The larger-batch candidates of the GPU engine, relative to the profile's batch (128 in the full profile).
    "2x batch": _batch_times(2),
    "4x batch": _batch_times(4),
    "4x batch, 1-epoch warmup": _batch_times(4, warmup_epochs=1.0),
}
LARGE_BATCH_LABELS = ("2x batch", "4x batch", "4x batch, 1-epoch warmup")


def _recipe_run(label: str, seed: int, profile: Profile, stage: str) -> PlannedRun:
    change = RECIPE_SEARCH[label](profile)
    tag = {"tag": f"recipe_{_slug(label)}"} if change or profile.budget("recipe_search") else {}
    return PlannedRun(label, "deep_efficientnet", seed, arguments={**tag, **profile.budget("recipe_search"), **change},
                      fields={"stage": stage})


def _recipe_screen(profile: Profile) -> list[PlannedRun]:
    if profile.budget("recipe_search") is None:
        return []
    return [_recipe_run(label, profile.seeds[0], profile, "screen") for label in RECIPE_SEARCH]


def recipe_search_winner(screen: list[dict]) -> str:
    """The screen's best change on validation accuracy; a larger batch only where it keeps the recipe's accuracy
    (recipes.large_batch_holds), since its point is speed."""
    recipe = next(r for r in screen if r["label"] == "recipe")["val"]["acc"]
    eligible = [r for r in screen if r["label"] not in LARGE_BATCH_LABELS or large_batch_holds(r["val"]["acc"], recipe)]
    return max(eligible, key=lambda r: r["val"]["acc"])["label"]


def _recipe_confirm(profile: Profile, screen: list[dict]) -> list[PlannedRun]:
    if not screen:
        return []
    winner = recipe_search_winner(screen)
    return [_recipe_run(winner, seed, profile, "confirm") for seed in profile.seeds[1:]]


RECIPE_SEARCH_STUDY = Study("recipe_search", _recipe_screen, _recipe_confirm)


def run_recipe_search(profile: Profile | str) -> list[dict]:
    """The screen (``stage`` "screen", seed 0), then the validation winner on the profile's other seeds
    ("confirm"); nothing where the profile has no search budget."""
    return run_study(RECIPE_SEARCH_STUDY, profile)


# --- The course project's credits for the ingredients of DeepEfficientNet's recipe (issue #35), each with the ablation
# row that removes it: (ingredient, ablation row, the claimed gain in points; None where nobody claimed one).
RECIPE_INGREDIENTS = (
    ("SE", "SE off", 2.5),
    ("comprehensive regularisation", ALL_REGULARISATION_OFF, 4.38),
    ("cosine annealing over step decay", "step schedule", 3.29),
    ("data augmentation over normalisation alone", "no augmentation", 3.6),
    ("flips and turns over affine + colour", PREVIOUS_RECIPE, None),
)

# --- Paired comparisons (notebook 04, the report): each (study, Pair), variant minus base, with the verdict rule of
# utils.comparisons. Attention on each backbone against that backbone's no-attention row; DeepEfficientNet's own SE
# (its recipe against the "SE off" ablation); the headline pairs against DeepEfficientNet.
PAIRED_COMPARISONS: tuple[tuple[str, Pair], ...] = (
    *((SMALL_ATTENTION_STUDY.name, Pair("attention", "SimpleCNN", label, "none", f"SimpleCNN + {label}"))
      for label in list(SMALL_ATTENTION_VARIANTS)[1:]),
    *((ATTENTION_STUDY.name, Pair("attention", "EfficientNet-B0", label, "none", f"B0 + {label}"))
      for label in list(ATTENTION_VARIANTS)[1:]),
    (ABLATION_STUDY.name, Pair("attention", "DeepEfficientNet", "recipe", "SE off", "DeepEfficientNet's own SE",
                                 "SE on")),
    *((ABLATION_STUDY.name, Pair("recipe", "DeepEfficientNet", "recipe", row, f"DeepEfficientNet: {ingredient}"))
      for ingredient, row, _ in RECIPE_INGREDIENTS[1:]),
    (BASELINE_STUDY.name, Pair("headline", "", "SimpleCNN", "DeepEfficientNet", "SimpleCNN vs DeepEfficientNet")),
    (BASELINE_STUDY.name, Pair("headline", "", "EfficientNet-Lite0 (ImageNet)", "DeepEfficientNet",
                               "Lite0 (ImageNet) vs DeepEfficientNet")),
    # Whether the architecture or MedMNIST's recipe made ResNet-18's published 95.8%, and whether ImageNet weights
    # explain Lite0's lead (#35): each against the same recipe's other run of the same seed.
    (BASELINE_STUDY.name, Pair("headline", "", "ResNet-18", "DeepEfficientNet", "ResNet-18 vs DeepEfficientNet")),
    (BASELINE_STUDY.name, Pair("headline", "EfficientNet-Lite0", "EfficientNet-Lite0 (ImageNet)",
                               "EfficientNet-Lite0 (scratch)", "Lite0: ImageNet weights vs scratch")),
)


def planned_seeds(study: str, profile: Profile) -> tuple[int, ...]:
    """The seeds a study plans under ``profile`` (the fast backbone's study plans more)."""
    return (profile.small_backbone_seeds or profile.seeds) if study == SMALL_ATTENTION_STUDY.name else profile.seeds


# Headline runs first: if a sweep is cut short, what is done is what matters most.
STUDIES = {study.name: study for study in (DEEP_EFFICIENTNET, BASELINE_STUDY, SMALL_ATTENTION_STUDY, ATTENTION_STUDY, ZOO_STUDY,
                                           IMBALANCE_STUDY, ABLATION_STUDY, RECIPE_SEARCH_STUDY, PCAM_STUDY,
                                           PCAM_SCALING_STUDY)}


# The notebooks' names for the studies.
def run_deep_efficientnet(profile: Profile | str) -> list[dict]:
    return run_study(DEEP_EFFICIENTNET, profile)


def run_baselines(profile: Profile | str) -> list[dict]:
    return run_study(BASELINE_STUDY, profile)


def run_attention_study(profile: Profile | str) -> list[dict]:
    return run_study(ATTENTION_STUDY, profile)


def run_small_attention_study(profile: Profile | str) -> list[dict]:
    return run_study(SMALL_ATTENTION_STUDY, profile)


def run_ablation_study(profile: Profile | str) -> list[dict]:
    return run_study(ABLATION_STUDY, profile)


def run_zoo(profile: Profile | str) -> list[dict]:
    return run_study(ZOO_STUDY, profile)


def run_imbalance_study(profile: Profile | str) -> list[dict]:
    return run_study(IMBALANCE_STUDY, profile)


def run_pcam_study(profile: Profile | str) -> list[dict]:
    """The screen, then (with a final budget) the screen's validation-AUC winner on all training patches;
    records carry ``label`` and ``stage`` ("screen" or "final")."""
    return run_study(PCAM_STUDY, profile)


def run_pcam_scaling(profile: Profile | str) -> list[dict]:
    return run_study(PCAM_SCALING_STUDY, profile)


def summarize(records: list[dict], by: str = "label") -> list[dict]:
    """Mean and standard deviation over seeds of each group's validation/test metrics."""
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r[by], []).append(r)
    rows = []
    for name, rs in groups.items():
        row = {"name": name, "seeds": len(rs), "params": rs[0]["params"], "flops": rs[0]["flops"]}
        for split in ("val", "test"):
            for metric in ("acc", "macro_f1", "auc"):
                values = np.array([r[split][metric] for r in rs])
                row[f"{split}_{metric}_mean"] = float(values.mean())
                row[f"{split}_{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        row["train_seconds_mean"] = float(np.mean([r["train_seconds"] for r in rs]))
        row["epochs"] = rs[0].get("config", {}).get("epochs", "")
        row["devices"] = sorted({r["device"] for r in rs if "device" in r})
        rows.append(row)
    return rows


def _mean_sd(row: dict, metric: str) -> str:
    """Seed mean in percent, with its standard deviation when there are seeds to spread (16 characters)."""
    spread = f" ±{100 * row[f'{metric}_std']:4.2f}" if row["seeds"] > 1 else " " * 6
    return f"{100 * row[f'{metric}_mean']:>10.2f}{spread}"


def format_summary(rows: list[dict], baseline: str | None = None) -> str:
    width = max([len(r["name"]) for r in rows] + [8]) + 2
    lines = [f"{'':<{width}}{'seeds':>6}{'params':>10}{'MFLOPs':>8}{'epochs':>7}{'val acc %':>16}{'test acc %':>16}"
             f"{'macro-F1':>10}{'train s':>9}"
             + (f"{'d val acc':>11}" if baseline else "")]
    base = next((r for r in rows if r["name"] == baseline), None)
    for r in rows:
        line = (f"{r['name']:<{width}}{r['seeds']:>6}{r['params'] / 1e6:>9.2f}M{r['flops'] / 1e6:>8.1f}{r['epochs']:>7}"
                f"{_mean_sd(r, 'val_acc')}{_mean_sd(r, 'test_acc')}"
                f"{r['test_macro_f1_mean']:>10.4f}{r['train_seconds_mean']:>9.0f}")
        if base:
            line += f"{100 * (r['val_acc_mean'] - base['val_acc_mean']):>+11.2f}"
        lines.append(line)
    return "\n".join(lines)


def imbalance_summary(records: list[dict], class_names: list[str]) -> list[dict]:
    """Per strategy: seed mean and std of test macro-F1 and accuracy, and mean test recall per class."""
    rows = []
    for row in summarize(records):
        rs = [r for r in records if r["label"] == row["name"]]
        recall = np.array([[r["test"]["per_class"][c]["recall"] for c in class_names] for r in rs])
        rows.append(dict(row, imbalance=rs[0]["imbalance"], recall_mean=recall.mean(0).tolist(),
                         recall_std=(recall.std(0, ddof=1) if len(rs) > 1 else 0 * recall[0]).tolist(),
                         min_recall=float(recall.mean(0).min())))
    return rows


def format_imbalance(rows: list[dict], class_names: list[str]) -> str:
    from .plots import short_names
    names = short_names(class_names)
    width = max(len(r["name"]) for r in rows) + 2
    lines = [f"{'':<{width}}{'val macro-F1':>13}{'test macro-F1':>15}{'acc %':>8}  test recall per class: "
             + " ".join(f"{n:>6}" for n in names)]
    for r in rows:
        lines.append(f"{r['name']:<{width}}{r['val_macro_f1_mean']:>13.4f}"
                     f"{r['test_macro_f1_mean']:>8.4f} ±{r['test_macro_f1_std']:.3f}"
                     f"{100 * r['test_acc_mean']:>8.2f}  {'':<23}" + " ".join(f"{v:>6.3f}" for v in r["recall_mean"]))
    return "\n".join(lines)
