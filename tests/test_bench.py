"""The benchmark's FLOP count: torch.utils.flop_counter with a grouped convolution's backward counted correctly,
against a hand count."""
import torch

from utils.bench import counted_flops, step_flops
from utils.models import build_model


def conv_flops_by_hand(n, c_in, c_out, groups, k, h, w):
    """Multiply-adds (2 FLOPs each) of a stride-1, same-padded convolution's forward pass."""
    return 2 * n * c_out * (c_in // groups) * k * k * h * w


def test_a_depthwise_and_a_dense_convolution_count_three_forwards_for_forward_and_backward():
    for groups in (1, 480):
        conv = torch.nn.Conv2d(480, 480, 3, padding=1, groups=groups, bias=False)
        x = torch.rand(2, 480, 7, 7, requires_grad=True)
        forward = conv_flops_by_hand(2, 480, 480, groups, 3, 7, 7)
        assert counted_flops(lambda: conv(x)) == forward
        # input gradient + weight gradient: one forward's work each
        assert counted_flops(lambda: conv(x).sum().backward()) == 3 * forward


def test_the_weight_gradient_alone_costs_one_forward():
    conv = torch.nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False)
    x = torch.rand(4, 32, 8, 8)  # no input gradient asked for
    assert counted_flops(lambda: conv(x).sum().backward()) == 2 * conv_flops_by_hand(4, 32, 32, 32, 3, 8, 8)


def test_a_deep_efficientnet_training_step_is_about_three_forward_passes():
    model = build_model("deep_efficientnet", 8)
    model.eval()
    with torch.no_grad():
        forward = counted_flops(lambda: model(torch.rand(2, 3, 28, 28)))
    model.train()
    step = step_flops(model, 2, 28)
    assert 2.5 * forward < step < 3.5 * forward


def test_the_allocator_setting_is_timed_on_the_speedruns_own_step():
    """``--malloc``'s worker: where glibc can keep freed memory (Linux) the setting is made, and one timed step of the
    float32 recipe comes back in milliseconds."""
    import platform

    from utils.bench import _speedrun_step_ms
    from utils.data import DEFAULT_DATA_ROOT
    from utils.experiment import keep_freed_memory
    assert keep_freed_memory() == (platform.libc_ver()[0] == "glibc")
    assert _speedrun_step_ms("fp32", keep_memory=keep_freed_memory(), threads=1, steps=1,
                             data_root=DEFAULT_DATA_ROOT) > 0
