"""``lipbench check V --model pkg.mod:make_d --input-shape 3,32,32 [--data ...]``: a variant on
the user's own discriminator and data, judged beside built-ins run in the same run.

* The model is validated up front in a defendant (:func:`harness.models.check_user_model`):
  a bad target, a factory that returns no ``nn.Module`` or a shape the model rejects is exit
  code 2 with one line. The data (:mod:`harness.data`) is loaded and checked against the
  input shape the same way.
* Every suite whose runner trains a GAN (its settings declare ``user_model``) runs on the
  user's model: its parameter grid becomes the one data set, and one suite per runner kind
  runs (the one named like the kind, else the first), since the others would repeat it on
  the same model. Suites whose runner has its own models (the contract, gradient bounds on
  bias-free MLPs, spectral accuracy) judge the method on lipbench's models, against the
  stored baselines, as in any check.
* No stored baseline exists for a user's model. The built-ins of ``--against`` (default
  ``sn_w none``) run on the same model in the same run, and the variant's rows are compared
  with the *reference* built-in's rows (``--as NAME``'s, else the first ``--against`` other
  than ``none``) by the suites' usual rules, as another implementation of that built-in
  (quantities that differ between correct implementations by design are reported, not
  failed). The variant's own claim checks apply as usual; the built-ins' own check
  violations on the user's model are reported, not failed (they judge the built-ins, not the
  variant).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import pandas as pd

from harness.baselines import compare_suite, evaluate_checks, run_errors
from harness.baselines.compare import not_run
from harness.baselines.identity import baseline_label
from harness.baselines.verdict import FAILING, to_frame
from harness.data import DataChoice, default_data, load_checked, parse_data
from harness.errors import UserError
from harness.models import UserModel, check_user_model, paired_generator, parse_input_shape
from harness.results import ResultsDir
from harness.results.fingerprint import method_source
from harness.runners import runner_for
from harness.suite import MethodSpec, Suite

#: The built-ins a ``--model`` check runs beside the variant unless ``--against`` names others.
DEFAULT_AGAINST = ("sn_w", "none")
#: Case parameters that name lipbench's own model or data (replaced by the user's).
_MODEL_PARAMS = ("model", "size", "data")


def add_options(p: argparse.ArgumentParser) -> None:
    """The ``check`` flags of a user's model and data."""
    p.add_argument("--model", metavar="PKG.MOD:ATTR",
                   help="your discriminator: a class or factory returning a torch.nn.Module (called with no "
                        "arguments); runs every GAN suite on it beside --against (default: sn_w none)")
    p.add_argument("--input-shape", metavar="C,H,W", help="with --model: the input shape without batch (or D)")
    p.add_argument("--num-classes", type=int, default=0, metavar="K",
                   help="with --model: a conditional discriminator D(x, y) with K classes")
    p.add_argument("--data", metavar="DATA", help="with --model: npy:PATH, folder:PATH, mnist, cifar10, stl10 or "
                                                 "celeba (default: scikit-learn's digits at the input size)")
    p.add_argument("--data-root", metavar="DIR", help="folder of mnist/cifar10/stl10/celeba (default: "
                                                     "$LIPBENCH_DATA_ROOT or ./data); nothing is downloaded")
    p.add_argument("--labels", metavar="PATH", help="with --data npy:PATH: an .npy of N integer class labels")
    p.add_argument("--data-range", metavar="LO,HI", help="with --data npy:PATH: the range of float values "
                                                        "(default: [-1, 1]; uint8 is [0, 255])")


@dataclass(frozen=True)
class OwnModel:
    """The user's model and data, validated."""

    model: UserModel
    data: DataChoice
    samples: int


def own_model(args: argparse.Namespace, builtins: Sequence[str] = ()) -> OwnModel | None:
    """The validated ``--model`` and ``--data`` of a command line (``None`` without ``--model``);
    ``builtins``: the built-in methods that will run on it (each must accept its layers)."""
    if not args.model:
        given = [f for f, v in (("--input-shape", args.input_shape), ("--num-classes", args.num_classes),
                                ("--data", args.data), ("--data-root", args.data_root), ("--labels", args.labels),
                                ("--data-range", args.data_range)) if v]
        if given:
            raise UserError(f"{given[0]}: only with --model (lipbench's own suites choose their models and data)")
        return None
    if not args.input_shape:
        raise UserError(f"--model {args.model}: needs --input-shape (C,H,W or D)")
    if args.num_classes < 0 or args.num_classes == 1:
        raise UserError(f"--num-classes {args.num_classes}: a conditional discriminator has 2 or more classes")
    model = UserModel(args.model, parse_input_shape(args.input_shape), args.num_classes, method_source(args.model))
    paired_generator(model.input_shape)  # a shape lipbench has a generator for
    check_user_model(model, methods=tuple(builtins))
    choice = (parse_data(args.data, model.input_shape, root=args.data_root, labels=args.labels,
                         value_range=args.data_range)
              if args.data else default_data(model.input_shape))
    source = load_checked(choice, model.input_shape)
    return OwnModel(model, choice, len(source))


def takes_model(suite: Suite) -> bool:
    """Whether the suite's runner trains a GAN on a model the case names (settings ``user_model``)."""
    return "user_model" in runner_for(suite.kind).declarations.settings


def on_own_model(suites: Iterable[Suite], own: OwnModel) -> list[Suite]:
    """The suites as a ``--model`` check runs them: GAN suites on the user's model and data (one
    per runner kind), the others unchanged."""
    out, kinds = [], set()
    ordered = sorted(suites, key=lambda s: s.name != s.kind)  # the suite named like its kind first
    for suite in ordered:
        if not takes_model(suite):
            out.append(suite)
        elif suite.kind not in kinds:
            kinds.add(suite.kind)
            out.append(_on_model(suite, own))
    return sorted(out, key=lambda s: [x.name for x in suites].index(s.name))


def _on_model(suite: Suite, own: OwnModel) -> Suite:
    raw = copy.deepcopy(suite.raw)
    for part in [raw] + list(raw["presets"].values()):
        matrix = part.get("matrix")
        if isinstance(matrix, dict):
            for key in _MODEL_PARAMS:
                matrix.pop(key, None)
        for key in ("include", "exclude"):
            part.pop(key, None)
        settings = part.get("settings") or {}
        for key in ("user_model", "data_args", "models"):
            settings.pop(key, None)
    raw.setdefault("matrix", {})["data"] = [own.data.name]
    raw.setdefault("settings", {}).update(user_model=own.model.setting(),
                                          data_args={own.data.name: copy.deepcopy(own.data.args)})
    return dataclasses.replace(suite, raw=raw)


def check_batches(suites: Iterable[Suite], own: OwnModel, preset: str) -> None:
    """A data set with fewer samples than a suite's batch is refused before anything runs."""
    for suite in suites:
        if not takes_model(suite) or preset not in suite.presets:
            continue
        batch = suite.resolved(preset)["settings"].get("batch", runner_for(suite.kind).declarations.settings["batch"]
                                                       .default)
        if isinstance(batch, int) and batch > own.samples:
            raise UserError(f"--data {own.data.text}: {own.samples} samples, fewer than the batch of {batch} of suite "
                            f"{suite.name} (--set batch=N, or more data)")


def reference_of(against: Sequence[MethodSpec], as_name: str | None) -> str:
    """The label whose rows the variant is compared with on the user's model."""
    if as_name:
        return next(s.label for s in against if s.name == as_name)
    return next((s.label for s in against if s.name != "none"), against[0].label)


def judge_beside(suites: Sequence[Suite], results: ResultsDir, variant: str, reference: str,
                 against: Sequence[str]) -> pd.DataFrame:
    """Verdicts of the suites run on the user's model: the checks as usual (the ``--against``
    built-ins' violations reported, not failed), and the variant's rows compared with the
    ``reference`` built-in's rows of this run, as another implementation of it."""
    names = {s.name for s in suites}
    rows = results.rows()
    rows = rows[rows["suite"].isin(names)] if len(rows) else rows
    manifest = results.manifest()
    profiles = manifest.get("methods") or {}
    planned = [tuple(p) for p in sorted(results.planned_keys()) if p[0] in names]
    verdicts = run_errors(rows)
    if (results.path / "cases.jsonl").exists():
        verdicts += not_run(planned, results.completed_keys())
    as_reference = {**profiles, variant: {**profiles.get(variant, {}), "judged_as": _name_of(reference, profiles)}}
    stored = baseline_label(variant, as_reference[variant])
    for suite in suites:
        verdicts += [_beside(v, against) for v in evaluate_checks(suite, rows, profiles)]
        base = rows[(rows["suite"] == suite.name) & (rows["method"] == reference)].assign(method=stored,
                                                                                          source="this run")
        mine = rows[rows["method"] == variant]
        found = compare_suite(suite, mine, base if len(base) else None,
                              [p for p in planned if p[2] == variant], profiles=as_reference)
        verdicts += [{**v, "detail": f"beside {reference} on the same model in this run; {v['detail']}"}
                     for v in found]
    return to_frame(verdicts)


def _name_of(label: str, profiles: dict[str, Any]) -> str:
    return str((profiles.get(label) or {}).get("name", label))


def _beside(verdict: dict[str, Any], against: Sequence[str]) -> dict[str, Any]:
    """A built-in's check verdict on the user's model: reported, not failed."""
    if verdict["method"] not in against or verdict["verdict"] not in FAILING - {"error"}:
        return verdict
    return {**verdict, "verdict": "n/a",
            "detail": f"reported, not judged: {verdict['method']} runs beside the variant (--against) on your "
                      f"model; {verdict['verdict']}: {verdict['detail']}"}
