"""Conformance battery: every registered construction family x {MLP, CNN, ResNet} keeps the contract.

A family added to :data:`lotterylab.construct.FAMILIES` is tested here without a line of new test code:
the ticket is a pruning of the source regenerated from its seed; the same seed gives the same mask;
growth never redraws a value the engine solved against; the certificate is never below the error
found by sampling and attack; the report has its schema; bad arguments are refused with the fix.
"""

import pytest
import torch

import lotterylab as ll
from lotterylab.construct import FAMILIES, ConstructionError, construction
from lotterylab.construct.families import TwoL, register_family

from targets import SHAPE, small_cnn, small_resnet, trained_mlp

KINDS = {"mlp": lambda: (trained_mlp("relu", steps=60), None, (-1.0, 1.0)),
         "cnn": lambda: (small_cnn("relu", steps=20), SHAPE, (0.0, 1.0)),
         "resnet": lambda: (small_resnet("relu", steps=5), SHAPE, (0.0, 1.0))}
# few first-layer candidates and a tight tolerance: instances fail and the source grows
SETTINGS = {"eps_param": 0.005, "rho_first": 8, "seed": 0}
CASES = [(f, k) for f in FAMILIES for k in KINDS]
_BUILT: dict = {}


def built(family: str, kind: str, monkeypatch=None):
    """(target, shape, domain, ticket, engine) of one family on one kind of target, built once."""
    if (family, kind) not in _BUILT:
        target, shape, domain = KINDS[kind]()
        engines = []

        class Spy(construction.Engine):  # the real engine, remembered so its buffers can be compared
            def __init__(self, *a, **kw):
                super().__init__(*a, **kw)
                engines.append(self)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(construction, "Engine", Spy)
            ticket = ll.construct(target, mode=family, domain=domain, input_shape=shape, **SETTINGS)
        _BUILT[family, kind] = (target, shape, domain, ticket, engines[-1])
    return _BUILT[family, kind]


@pytest.mark.parametrize("family,kind", CASES)
def test_ticket_is_a_pruning_of_the_regenerated_source(family, kind, tmp_path):
    target, shape, domain, ticket, _ = built(family, kind)
    src, net = ticket.source(), ticket.network()
    assert set(ticket.masks) == {n for n, _ in src.named_parameters()}
    for name, p in net.state_dict().items():
        assert torch.equal(p, src.state_dict()[name] * ticket.masks[name])
    back = ll.load_ticket(ticket.save(tmp_path / "t.safetensors"))
    for (n, a), (_, b) in zip(src.state_dict().items(), back.source().state_dict().items()):
        assert torch.equal(a, b), n  # regenerated from the seed alone


@pytest.mark.parametrize("family,kind", CASES)
def test_same_seed_same_mask_and_another_seed_another(family, kind):
    target, shape, domain, ticket, _ = built(family, kind)
    again = ll.construct(target, mode=family, domain=domain, input_shape=shape, **SETTINGS)
    assert all(torch.equal(ticket.masks[n], again.masks[n]) for n in ticket.masks)
    assert again.report["certificate"] == ticket.report["certificate"]
    other = ll.construct(target, mode=family, domain=domain, input_shape=shape, **{**SETTINGS, "seed": 1})
    assert any(ticket.masks[n].shape != other.masks[n].shape or not torch.equal(ticket.masks[n], other.masks[n])
               for n in ticket.masks)


@pytest.mark.parametrize("family,kind", CASES)
def test_growth_never_redraws_a_value(family, kind):
    """The source grew (new rows and columns), and what the engine solved against is, entry by entry,
    the source the ticket regenerates: nothing drawn before a growth step changed after it."""
    _, _, _, ticket, engine = built(family, kind)
    assert ticket.report["subset_sum"]["neurons_added"] > 0
    params = ticket.source().state_dict()
    for L in engine.src.layers:
        w = params[f"{L.name}.weight"].double()
        assert torch.equal(L.W.double().reshape(w.shape), w), L.name
        assert torch.equal(L.b.double(), params[f"{L.name}.bias"].double()), L.name
        assert torch.equal(L.mW.reshape(w.shape), ticket.masks[f"{L.name}.weight"]), L.name


@pytest.mark.parametrize("family,kind", CASES)
def test_certificate_is_never_below_the_sampled_error(family, kind):
    target, shape, domain, ticket, _ = built(family, kind)
    check = ll.verify(target, ticket, domain=domain, samples=200, attack_steps=5, attack_starts=8, input_shape=shape)
    assert 0 < check["sup_error"] <= ticket.report["certificate"]


REPORT = {"mode": str, "eps_param": float, "guarantee_mode": bool, "first_layer": str, "objective": str,
          "rho": int, "rho_first": int, "rho_b": int, "certificate": float, "certificate_per_layer": list,
          "depth": dict, "widths": dict, "parameters": dict, "subset_sum": dict, "timings_s": dict, "rounds": list,
          "domain": dict, "theory_width_bound": dict, "constant_inputs_folded": int}


@pytest.mark.parametrize("family,kind", CASES)
def test_report_schema(family, kind):
    target, _, _, ticket, _ = built(family, kind)
    rep = ticket.report
    for key, typ in REPORT.items():
        assert isinstance(rep[key], typ), key
    assert rep["mode"] == family and rep["depth"]["source"] == FAMILIES[family].source_depth(rep["depth"]["target"])
    assert len(rep["certificate_per_layer"]) == rep["depth"]["target"] or kind == "resnet"
    p = rep["parameters"]
    assert p["ticket"] == ticket.masks.num_kept() < p["source"]
    assert p["target"] == sum(q.numel() for q in target.parameters() if q.requires_grad) or kind != "mlp"
    assert rep["subset_sum"]["unresolved"] == sum(u["weights"] + u["biases"]
                                                  for u in rep["subset_sum"]["unresolved_per_layer"])


@pytest.mark.parametrize("family", list(FAMILIES))
def test_bad_arguments_are_refused_with_the_fix(family):
    target, shape, domain = KINDS["mlp"]()
    for kw, fix in (({"eps": 0.0}, "eps must be a finite number > 0"),
                    ({"eps_param": float("nan")}, "eps_param must be a finite number > 0"),
                    ({"delta": 1.5}, r"delta must be in \(0, 1\)"),
                    ({"rho": 0}, "rho must be a whole number >= 1"),
                    ({"objective": "fastest"}, "objective must be min_l1, min_cardinality or min_error"),
                    ({"first_layer": "magic"}, "first_layer must be one of"),
                    ({"domain": (1.0, -1.0)}, "lower > upper")):
        with pytest.raises(ConstructionError, match=fix):
            ll.construct(target, mode=family, **kw)
    with pytest.raises(ConstructionError, match="mode must be one of"):
        ll.construct(target, mode=family + "-unknown")


def test_a_registered_family_is_built_by_construct():
    """The extension point: a new family (here 2L under another name) is constructed by name, and a
    name already taken is refused."""
    class Copy(TwoL):
        name = "2L-copy"

    register_family(Copy)
    try:
        target, _, domain = KINDS["mlp"]()
        a = ll.construct(target, mode="2L-copy", eps_param=0.02, domain=domain)
        b = ll.construct(target, mode="2L", eps_param=0.02, domain=domain)
        assert a.report["mode"] == "2L-copy"
        assert all(torch.equal(a.masks[n], b.masks[n]) for n in a.masks)
        with pytest.raises(ValueError, match="new name"):
            register_family(Copy)
    finally:
        FAMILIES.pop("2L-copy", None)
