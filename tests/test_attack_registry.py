"""Every registered attack against the attack contract (attacks/registry.py), on the
trained seed CNN and real CIFAR-10 test points.

The cases come from the registry: each attack at its registration's ``quick`` options,
for every norm it declares (pixel-space eps) plus one normalized-space case. A new
attack module is tested here as soon as it registers; nothing in this file names one.

- a direct call (``info(name).fn(model, x, y, threat, **spec.call_kwargs())``): inside
  the ball and [0,1], x untouched, modes and gradient flags restored, accuracy never
  raised and lowered on the trained model, ``fooled`` equal to the model's verdict on
  x_adv (and, for minimal-norm attacks, ``norms`` equal to x_adv's and fooled == norms <=
  eps), the same result for the same seed;
- evaluate(): the same flags with channels-last on and off, its early exit (only points
  still robust are attacked) changes no number, and its cascade's worst case is the AND
  of the standalone flags;
- the CLI: `robust eval --attack NAME --attack-option NAME.KEY=VALUE` writes a record
  whose attack fields give back the spec; every option has a help line, a default of
  its type and a flag that `robust eval --help` lists.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from typing import NamedTuple

import pytest
import torch
from click.testing import CliRunner
from support import eval_points, trained_cnn

from robustbench_local.attacks import AttackSpec, info, names
from robustbench_local.attacks.base import AttackResult, make_ball
from robustbench_local.attacks.registry import KINDS, all_options
from robustbench_local.checkpoint import save_checkpoint
from robustbench_local.cli import main
from robustbench_local.eval_records import min_norm_list
from robustbench_local.evaluation import evaluate
from robustbench_local.results import unpack_flags
from robustbench_local.threat import NORMS, ThreatModel

N = 64  # points per case
# attacks that run as one batch are whole suites (AutoAttack): fewer points, though one
# point left robust still costs a full Square run (its 5,000 queries) at L2
N_ONE_BATCH = 12
SEED = 0
# pixel-space radii where the trained CNN is broken on some points but not on all
PIXEL_EPS = {"linf": 8 / 255, "l2": 0.5, "l1": 12.0}
STD = 0.5  # the seed CNN's normalization: normalized-space eps = pixel eps / 0.5
REL_TOL = 1e-5  # x_adv may sit on the sphere: float rounding of the norm


# ----------------------------------------------------------------------------- cases
def _break_norm(name: str) -> str:
    """The norm at which every attack should break some points: L-inf 8/255 where the
    attack has it."""
    return next(n for n in NORMS if n in info(name).norms)


def _cases() -> list:
    out = []
    for name in names():
        norms = info(name).norms
        out += [pytest.param(name, norm, "pixel", id=f"{name}-{norm}") for norm in norms]
        out.append(pytest.param(name, norms[0], "normalized", id=f"{name}-{norms[0]}-normalized"))
    return out


CASES = _cases()
MINIMAL = [c for c in CASES if info(c.values[0]).kind == "minimal-norm"]
# one-batch suites repeat at their break norm only: seeding does not depend on the norm
REPEATED = [
    c
    for c in CASES
    if not info(c.values[0]).one_batch or (c.values[1] == _break_norm(c.values[0]) and c.values[2] == "pixel")
]


def _threat(norm: str, space: str = "pixel") -> ThreatModel:
    eps = PIXEL_EPS[norm] if space == "pixel" else PIXEL_EPS[norm] / STD
    return ThreatModel(norm, eps, space=space)


def _spec(name: str, norm: str, space: str = "pixel") -> AttackSpec:
    return AttackSpec(name, _threat(norm, space), info(name).quick)


@cache
def _model():
    """A private copy of the trained CNN (evaluate() may convert its layout in place)."""
    return copy.deepcopy(trained_cnn()[0]).eval()


def _points(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = eval_points(N)
    return (x[:N_ONE_BATCH], y[:N_ONE_BATCH]) if info(name).one_batch else (x, y)


@torch.no_grad()
def _predict(model, x: torch.Tensor) -> torch.Tensor:
    return model(x).argmax(1)


def _modes(model) -> tuple[list[bool], list[bool]]:
    return [m.training for m in model.modules()], [p.requires_grad for p in model.parameters()]


class Call(NamedTuple):
    spec: AttackSpec
    x: torch.Tensor
    y: torch.Tensor
    res: AttackResult
    x_untouched: bool
    modes_before: tuple
    modes_after: tuple


def _call(name: str, norm: str, space: str) -> Call:
    """One direct call through the registry, seeded, from train mode with every
    parameter requiring grad (and one submodule in eval mode, so that restoring means
    restoring each module's flag, not calling train() on the whole)."""
    model = _model()
    spec = _spec(name, norm, space)
    x, y = _points(name)
    x_in = x.clone()
    model.train()
    next(m for m in model.modules() if m is not model).eval()
    for p in model.parameters():
        p.requires_grad_(True)
    before = _modes(model)
    try:
        torch.manual_seed(SEED)
        res = info(name).fn(model, x_in, y, spec.threat, **spec.call_kwargs())
        after = _modes(model)
    finally:
        model.eval()
    return Call(spec, x, y, res, torch.equal(x_in, x), before, after)


@cache
def _first_call(name: str, norm: str, space: str) -> Call:
    return _call(name, norm, space)


# ----------------------------------------------------------------------------- direct calls
@pytest.mark.parametrize("name,norm,space", CASES)
def test_stays_in_ball_and_valid_pixels(name, norm, space):
    c = _first_call(name, norm, space)
    x_adv = c.res.x_adv
    assert x_adv.shape == c.x.shape and x_adv.dtype == c.x.dtype
    assert torch.isfinite(x_adv).all()
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0, f"{name} {norm}: x_adv outside [0,1]"
    ball = make_ball(_model(), c.x, c.spec.threat)
    size = ball.norms(x_adv, c.x)
    eps = c.spec.threat.eps
    assert float(size.max()) <= eps * (1 + REL_TOL), (
        f"{name} {norm} ({space}): largest perturbation {float(size.max()):.6g} > eps {eps:.6g}"
    )


@pytest.mark.parametrize("name,norm,space", CASES)
def test_leaves_x_alone_and_restores_modes(name, norm, space):
    c = _first_call(name, norm, space)
    assert c.x_untouched, f"{name} modified its input x"
    assert c.modes_after[0] == c.modes_before[0], f"{name} left the modules' train/eval modes changed"
    assert c.modes_after[1] == c.modes_before[1], f"{name} left parameters' requires_grad changed"


@pytest.mark.parametrize("name,norm,space", CASES)
def test_never_raises_accuracy_and_fooled_is_the_models_verdict(name, norm, space):
    c = _first_call(name, norm, space)
    model = _model()
    clean_ok = _predict(model, c.x) == c.y
    adv_wrong = _predict(model, c.res.x_adv) != c.y
    fooled = c.res.fooled
    assert fooled.dtype == torch.bool and fooled.shape == c.y.shape
    disagree = (fooled != adv_wrong).nonzero().flatten().tolist()
    assert not disagree, f"{name} {norm}: fooled differs from the model's prediction on x_adv at points {disagree}"
    robust = int((clean_ok & ~fooled).sum())
    assert int((~adv_wrong).sum()) <= int(clean_ok.sum()) and robust <= int(clean_ok.sum())


@pytest.mark.parametrize("name", names())
def test_lowers_accuracy_on_the_trained_model(name):
    norm = _break_norm(name)
    c = _first_call(name, norm, "pixel")
    clean_ok = _predict(_model(), c.x) == c.y
    robust = int((clean_ok & ~c.res.fooled).sum())
    clean = int(clean_ok.sum())
    print(f"\n{c.spec.label} @ {norm} {PIXEL_EPS[norm]:.4g} px: robust {robust}/{len(c.y)}, clean {clean}/{len(c.y)}")
    assert clean >= 3 and robust < clean, f"{name} broke no point at {norm} {PIXEL_EPS[norm]:.4g} (pixel space)"


@pytest.mark.parametrize("name,norm,space", MINIMAL)
def test_minimal_norm_attack_norms_match_x_adv(name, norm, space):
    c = _first_call(name, norm, space)
    norms, eps = c.res.norms, c.spec.threat.eps
    assert norms is not None and norms.shape == c.y.shape, f"{name} returned no per-point norms"
    assert not norms.isnan().any() and (norms >= 0).all()
    assert torch.equal(c.res.fooled, norms <= eps), f"{name} {norm}: fooled != (norms <= eps)"
    clean_wrong = _predict(_model(), c.x) != c.y
    assert (norms[clean_wrong] == 0).all(), f"{name}: a point misclassified clean has a norm above 0"
    f = c.res.fooled
    measured = make_ball(_model(), c.x, c.spec.threat).norms(c.res.x_adv, c.x)
    torch.testing.assert_close(
        measured[f],
        norms[f].to(measured.dtype),
        rtol=1e-5,
        atol=1e-6,
        msg=lambda m: f"{name} {norm}: norms differ from x_adv's perturbation: {m}",
    )


@pytest.mark.parametrize("name,norm,space", REPEATED)
def test_same_seed_same_result(name, norm, space):
    a, b = _first_call(name, norm, space), _call(name, norm, space)
    assert torch.equal(a.res.fooled, b.res.fooled), f"{name} {norm}: fooled changed between two seeded calls"
    assert torch.equal(a.res.x_adv, b.res.x_adv), f"{name} {norm}: x_adv changed between two seeded calls"
    if a.res.norms is not None:
        assert torch.equal(a.res.norms, b.res.norms)


# ----------------------------------------------------------------------------- under evaluate()
def _evaluate(specs, *, channels_last=False, cascade=False, batch_size=256, name="?") -> list[dict]:
    x, y = _points(name)
    return evaluate(
        (copy.deepcopy(_model()), dict(trained_cnn()[1])),
        specs,
        data=(x, y),
        n=None,
        seed=SEED,
        batch_size=batch_size,
        cascade=cascade,
        device="cpu",
        run_checks=False,
        channels_last=channels_last,
    )


def _flags(record: dict) -> torch.Tensor:
    return torch.from_numpy(unpack_flags(record["metrics"]["robust_flags"], record["metrics"]["n"]))


def _standalone(name: str, channels_last: bool = False, norm: str | None = None, points_of: str | None = None) -> dict:
    """``name`` alone under evaluate() at ``norm`` (its break norm), on the points of
    ``points_of`` (its own)."""
    return _standalone_run(name, channels_last, norm or _break_norm(name), points_of or name)


@cache
def _standalone_run(name: str, channels_last: bool, norm: str, points_of: str) -> dict:
    (rec,) = _evaluate([_spec(name, norm)], channels_last=channels_last, name=points_of)
    return rec


def _per_point(name: str) -> bool:
    """Attacks whose random starts evaluate() draws up front for every point (they take
    ``init``): a point's result does not depend on the other points of its batch."""
    return info(name).takes("init") and not info(name).one_batch


def _partner(name: str) -> str:
    """A cheap per-point attack to pair with ``name`` in a cascade."""
    norm = _break_norm(name)
    found = [
        n
        for n in names()
        if n != name
        and _per_point(n)
        and norm in info(n).norms
        and info(n).kind == "white-box"
        and not info(n).single_step
    ]
    found += [n for n in names() if n != name and _per_point(n) and norm in info(n).norms and n not in found]
    if not found:
        pytest.skip(f"no per-point attack measures {norm}")
    return found[0]


def _direct_on(name: str, x, y, todo: torch.Tensor) -> AttackResult:
    """The attack called directly on the points evaluate() attacks, seeded as evaluate()
    seeds it (random starts, where the attack takes them, drawn for all points first,
    then the batch's stream)."""
    model, spec, inf = _model(), _spec(name, _break_norm(name)), info(name)
    torch.manual_seed(SEED)
    kw = spec.call_kwargs()
    if inf.n_starts(spec.options):
        ball = make_ball(model, x, spec.threat)
        kw["init"] = [ball.random(x.shape, x.device, x.dtype)[todo] for _ in range(inf.n_starts(spec.options))]
    if inf.takes("seed"):
        kw["seed"] = SEED
    torch.manual_seed(SEED)  # evaluate()'s first batch draws from the seed's own stream
    return inf.fn(model, x[todo], y[todo], spec.threat, **kw)


@pytest.mark.parametrize("name", names())
def test_channels_last_gives_the_same_flags(name):
    on, off = _standalone(name, True), _standalone(name, False)
    assert on["environment"]["channels_last"] is True and off["environment"]["channels_last"] is False
    diff = (_flags(on) != _flags(off)).nonzero().flatten().tolist()
    assert not diff, f"{name}: channels-last changes the robust flags of points {diff}"
    assert on["metrics"]["robust_acc"] == off["metrics"]["robust_acc"]


@pytest.mark.parametrize("name", names())
def test_early_exit_changes_no_number(name):
    rec = _standalone(name)
    x, y = _points(name)
    clean_ok = _predict(_model(), x) == y
    todo = clean_ok.nonzero().flatten()
    assert rec["metrics"]["attacked"] == len(todo)  # points misclassified clean are not attacked
    res = _direct_on(name, x, y, todo)
    expect = clean_ok.clone()
    expect[todo] = ~res.fooled
    diff = (_flags(rec) != expect).nonzero().flatten().tolist()
    assert not diff, f"{name}: evaluate() and a direct call on the same points disagree at points {diff}"
    assert rec["metrics"]["robust_acc"] <= rec["metrics"]["clean_acc"]
    if res.norms is not None:
        norms = torch.zeros(len(y))
        norms[todo] = res.norms.float()
        assert rec["metrics"]["min_norms"] == min_norm_list(norms, clean_ok)


@pytest.mark.parametrize("name", [n for n in names() if _per_point(n)])
def test_per_point_attacks_give_the_same_flags_in_any_batches(name):
    """Batches of 8 points, clean mistakes skipped, against one call on every point."""
    (rec,) = _evaluate([_spec(name, _break_norm(name))], batch_size=8, name=name)
    x, y = _points(name)
    clean_ok = _predict(_model(), x) == y
    res = _direct_on(name, x, y, torch.arange(len(y)))
    diff = (_flags(rec) != (clean_ok & ~res.fooled)).nonzero().flatten().tolist()
    assert not diff, f"{name}: batches of 8 change the flags of points {diff}"


@pytest.mark.parametrize("name", names())
def test_cascade_worst_case_is_the_and_of_standalone_flags(name):
    partner = _partner(name)
    norm = _break_norm(name)
    mine, theirs = _flags(_standalone(name)), _flags(_standalone(partner, norm=norm, points_of=name))
    specs = [_spec(name, norm), _spec(partner, norm)]
    first, later, worst = _evaluate(specs, cascade=True, name=name)
    assert later["attack"]["cumulative"] is True and worst["attack"]["name"] == "worst-case"
    # first in the cascade: its standalone run; then the per-point partner on what is left
    assert torch.equal(_flags(first), mine), f"{name} first in a cascade differs from its standalone run"
    assert torch.equal(_flags(worst), mine & theirs), f"{name} then {partner}: worst case != AND of standalone flags"
    assert torch.equal(_flags(later), _flags(worst))

    _, later, worst = _evaluate(specs[::-1], cascade=True, name=name)
    if _per_point(name):
        assert torch.equal(_flags(worst), mine & theirs), (
            f"{partner} then {name}: worst case != AND of standalone flags"
        )
    else:  # run on fewer points, its random draws differ: the cumulative number can only fall
        assert int(_flags(worst).sum()) <= min(int(mine.sum()), int(theirs.sum())), (
            f"{partner} then {name}: cumulative robust above a standalone robust"
        )


# ----------------------------------------------------------------------------- CLI and registration
@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    model, meta = trained_cnn()
    path = tmp_path_factory.mktemp("ckpt") / "best.pth"
    save_checkpoint(path, model, meta)
    return path


def _cli_value(v) -> str:
    return str(v).lower() if isinstance(v, bool) else repr(v) if isinstance(v, float) else str(v)


@pytest.mark.parametrize("name", names())
def test_cli_eval_records_round_trip_to_the_spec(name, ckpt, tmp_path):
    norm = _break_norm(name)
    opts = [a for k, v in info(name).quick.items() for a in ("--attack-option", f"{name}.{k}={_cli_value(v)}")]
    args = [
        "eval",
        str(ckpt),
        "--attack",
        name,
        *opts,
        "--norm",
        norm,
        "--eps",
        repr(PIXEL_EPS[norm]),
        "--eps-space",
        "pixel",
        "--n",
        "16",
        "--batch-size",
        "16",
        "--no-checks",
        "--device",
        "cpu",
        "--results",
        str(tmp_path / "results"),
    ]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output + (repr(res.exception) if res.exception else "")
    (path,) = (tmp_path / "results" / "records").glob("*.json")
    rec = json.loads(path.read_text())
    spec = _spec(name, norm)
    assert rec["attack"]["name"] == name and rec["attack"]["label"] == spec.label
    assert AttackSpec.from_dict(rec["attack"]) == spec


@cache
def _eval_help() -> str:
    res = CliRunner().invoke(main, ["eval", "--help"], terminal_width=200)
    assert res.exit_code == 0, res.output
    return res.output


@pytest.mark.parametrize("name", names())
def test_registration_is_complete(name):
    inf = info(name)
    assert inf.kind in KINDS and inf.norms and set(inf.norms) <= set(NORMS)
    assert inf.summary, f"{name}: the function needs a docstring (its first paragraph is the summary)"
    flags = all_options()
    for o in inf.options.values():
        where = f"{name} option '{o.name}'"
        assert o.help.strip() and "\n" not in o.help, f"{where} needs a one-line help"
        assert type(o.default) is o.type, f"{where}: default {o.default!r} is not a {o.type.__name__}"
        assert o.check(name, o.default) == o.default, f"{where}: default outside its own bounds"
        if o.choices is not None:
            assert o.default in o.choices
        assert (name, o) in flags.get(o.flag, []), f"{where} has no CLI flag"
        assert f"--{o.flag}" in _eval_help(), f"robust eval --help does not list --{o.flag} ({where})"
    assert set(inf.quick) <= set(inf.options), f"{name}: quick names unknown options"
    for norm in inf.norms:
        spec = _spec(name, norm)  # quick options validate at every declared norm
        assert isinstance(spec.label, str) and spec.label
    assert isinstance(inf.title(inf.defaults()), str) and inf.title(inf.defaults())
    assert name in _eval_help(), f"robust eval --help does not name {name} under --attack"
