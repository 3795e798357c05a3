"""The fault matrix, round three (issue #36): no command overwrites a file it was not asked to create, one bad image
never sinks a batch, inputs a model was never meant to see are flagged, every bad argument gets one line, and the
derived numbers CI compares come out the same bytes on any x86 CPU. Each test fails when the behaviour it names
breaks."""
import json

import numpy as np


# --- derived numbers are written the same on every CPU ------------------------------------------------------------

def test_derived_numbers_differing_in_float_noise_are_written_as_the_same_bytes():
    # The temperature of results/full/deep_efficientnet/summary.json as an Intel Xeon (AMX) and an AMD EPYC (Zen 4)
    # computed it from the same stored predictions: the 16th digit differs.
    from utils.summaries import as_json
    intel, amd = 0.6425162274636739, 0.642516227463674
    assert as_json({"calibration": {"temperature": intel}}) == as_json({"calibration": {"temperature": amd}})
    # NumPy scalars and nested lists are written as plain JSON numbers; integers, flags and text stay as they are.
    text = as_json({"rows": [{"acc": np.float64(0.97), "n": np.int64(3421), "kept": True, "name": "SimpleCNN"}]})
    assert json.loads(text) == {"rows": [{"acc": 0.97, "n": 3421, "kept": True, "name": "SimpleCNN"}]}
    # Rounding keeps what a reader of a summary uses: far more digits than any table prints.
    assert abs(json.loads(as_json({"x": intel}))["x"] - intel) < 1e-9
