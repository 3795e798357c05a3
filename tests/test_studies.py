from utils.models import build_model, count_parameters
from utils.studies import ABLATIONS, ATTENTION_VARIANTS, format_summary, summarize
from utils.training import TrainConfig


def test_ablations_change_one_thing_each_and_are_valid():
    assert len(ABLATIONS) == 16 and ABLATIONS["recipe"] == {}
    fields = set(TrainConfig.__dataclass_fields__)
    for label, change in ABLATIONS.items():
        assert set(change) - {"model_kwargs"} <= fields, label


def test_se_off_removes_the_se_blocks():
    with_se = build_model("deep_efficientnet", 8)
    without = build_model("deep_efficientnet", 8, se=False)
    assert count_parameters(without) < count_parameters(with_se)
    assert not any(type(m).__name__ == "SqueezeExcite" for m in without.modules())
    assert set(ATTENTION_VARIANTS.values()) <= {"efficientnet_b0", "efficientnet_b0_se", "efficientnet_b0_cbam",
                                                "efficientnet_b0_msff"}


def test_summary_means_and_standard_deviations():
    def rec(label, acc):
        m = {"acc": acc, "macro_f1": acc, "auc": acc}
        return {"label": label, "params": 10, "flops": 5, "val": m, "test": m, "train_seconds": 2.0,
                "config": {"epochs": 3}}
    rows = summarize([rec("a", 0.90), rec("a", 0.92), rec("b", 0.80)])
    a, b = rows
    assert a["seeds"] == 2 and abs(a["val_acc_mean"] - 0.91) < 1e-12 and abs(a["val_acc_std"] - 0.014142) < 1e-5
    assert b["seeds"] == 1 and b["val_acc_std"] == 0.0
    assert "-11.00" in format_summary(rows, baseline="a")
