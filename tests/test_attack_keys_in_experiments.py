"""[[attacks]] entries of an experiment file take each attack's own options by name
(or by CLI flag), validated against the attack registry before anything runs."""

from __future__ import annotations

import pytest

from robustbench_local.attacks import AttackSpec, info
from robustbench_local.errors import RobustError
from robustbench_local.experiment import load_experiment
from robustbench_local.threat import ThreatModel

HEAD = """\
name = "keys"
[data]
dataset = "cifar10"
[train]
epochs = 1
[[cells]]
name = "a"
"""


def _units(tmp_path, body: str):
    path = tmp_path / "exp.toml"
    path.write_text(HEAD + body)
    return {u.spec.label: u.spec for u in load_experiment(path).units}


def test_options_by_name_by_flag_and_from_eval(tmp_path):
    specs = _units(
        tmp_path,
        """
[eval]
k = 7
[[attacks]]
name = "pgd"
[[attacks]]
name = "apgd"
loss = "dlr"
[[attacks]]
name = "fgsm"
fgsm_rs = true
[[attacks]]
name = "square"
n_queries = 300
[[attacks]]
name = "autoattack"
version = "plus"
""",
    )
    thr = ThreatModel()
    assert specs["PGD-7"] == AttackSpec("pgd", thr, k=7)  # [eval] k reaches pgd ...
    assert specs["APGD-DLR-7"] == AttackSpec("apgd", thr, k=7, loss="dlr")  # ... and apgd
    assert specs["R+FGSM"] == AttackSpec("fgsm", thr, random_start=True)  # the CLI flag's name works
    assert specs["Square-300"].n_queries == 300
    assert specs["AutoAttack-plus"].version == "plus"


@pytest.mark.parametrize(
    "entry, msg",
    [
        ('name = "pgd"\nn_queries = 10', "pgd has no option 'n_queries'; its options: k, "),
        ('name = "square"\nk = "x"', "square has no option 'k'"),
        ('name = "apgd"\nk = 0', "apgd option 'k' must be >= 1, got 0"),
        ('name = "pgd"\nloss = "margin"', "unknown loss 'margin' for pgd; valid: ce, dlr"),
        ('name = "pgd"\nkk = 3', "unknown key 'kk'"),
    ],
)
def test_bad_attack_options_are_named_with_their_line(tmp_path, entry, msg):
    with pytest.raises(RobustError) as e:
        _units(tmp_path, f"[[attacks]]\n{entry}\n")
    assert msg in str(e.value) and "exp.toml" in str(e.value) and "\n" not in str(e.value)


def test_every_registered_option_is_a_key(tmp_path):
    from robustbench_local.experiment import attack_keys

    keys = attack_keys()
    from robustbench_local.attacks import names

    for name in names():
        for opt in info(name).options:
            assert opt in keys, (name, opt)
