import pytest
import torch
from torch import nn

from lotterylab import models


@pytest.mark.parametrize("name", models.names())
def test_every_model_runs_on_mnist_and_cifar_shapes(name):
    for shape in ((1, 28, 28), (3, 32, 32)):
        m = models.create(name, "relu", shape, num_classes=7)
        m.eval()
        assert m(torch.zeros(2, *shape)).shape == (2, 7)


@pytest.mark.parametrize("act", sorted(models.ACTIVATIONS))
def test_activation_is_a_parameter(act):
    m = models.create("conv2", act, (1, 12, 12))
    kinds = {type(mod) for mod in m.modules()}
    assert type(models.make_activation(act)) in kinds
    assert torch.isfinite(m(torch.randn(2, 1, 12, 12))).all()


def test_literature_shapes():
    lenet = models.create("lenet_300_100")
    assert [tuple(p.shape) for p in lenet.parameters() if p.dim() == 2] == [(300, 784), (100, 300), (10, 100)]
    r = models.create("resnet20")
    convs = [m for m in r.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 19  # 1 stem + 9 blocks x 2; plus 2 downsampling 1x1 shortcuts
    assert sum(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in r.modules()) == 2
    assert sum(p.numel() for p in r.parameters()) == 272474
    assert sum(isinstance(m, nn.Conv2d) for m in models.create("vgg16").modules()) == 13
    assert sum(isinstance(m, nn.Conv2d) for m in models.create("conv6").modules()) == 6


def test_rebuild_from_arch_and_errors():
    m = models.create("mlp", "tanh", (1, 8, 8), 3, widths=[16, 16], seed=2)
    again = models.from_arch(m.lotterylab_arch, seed=2)
    assert all(torch.equal(a, b) for a, b in zip(m.parameters(), again.parameters()))
    with pytest.raises(ValueError, match="unknown model"):
        models.create("alexnet")
    with pytest.raises(ValueError, match="unknown activation"):
        models.create("lenet5", "swish")
    with pytest.raises(ValueError, match="does not take"):
        models.create("lenet5", bogus=1)
    with pytest.raises(ValueError, match="too small"):
        models.create("vgg16", input_shape=(3, 8, 8))


def test_models_are_built_without_torch_init_and_drawn_whole():
    """create() allocates parameters without torch's default init (lotterylab's init draws every one):
    the result is the same network as building normally and drawing over it, BatchNorm statistics
    at their defaults."""
    from lotterylab.init import initialize

    for name in ("lenet_300_100", "resnet20", "vgg11"):
        m = models.create(name, "relu", seed=3)
        ref = models._REGISTRY[name][0]("relu", tuple(m.lotterylab_arch["input_shape"]), 10)
        initialize(ref, m.lotterylab_init, 3)
        assert [n for n, _ in m.named_parameters()] == [n for n, _ in ref.named_parameters()]
        for (n, a), b in zip(m.state_dict().items(), ref.state_dict().values()):
            assert torch.equal(a, b), n


def test_modules_with_state_beyond_parameters_are_built_as_usual():
    """A builder whose module holds a buffer other than BatchNorm's, or a plain tensor, cannot be
    restored from the meta device: it is built normally, its state intact."""
    from torch import nn

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 2)
            self.register_buffer("offset", torch.full((2,), 0.5))
            self.scale = torch.tensor(2.0)

    for keep in ("offset", "scale"):
        def build(act, shape, classes, keep=keep):
            m = Scaled()
            if keep == "scale":
                del m._buffers["offset"]
            else:
                del m.scale
            return m
        m = models._build_uninitialised(build, "relu", (1, 1, 3), 2, {})
        assert not any(t.is_meta for t in [*m.parameters(), *m.buffers()])
        assert (torch.equal(m.offset, torch.full((2,), 0.5)) if keep == "offset" else float(m.scale) == 2.0)
