"""make gpu-check on a CPU: its plan, its deadline and its skip messages (the steps themselves need a GPU)."""
from utils.gpu_check import (BENCH_SECONDS, HEADLINE_STUDIES, MARGIN_SECONDS, TEST_SECONDS, bench_path, faster_engine,
                             plan_check, run_check)


def test_the_three_steps_fit_the_minutes_given():
    tests, bench, training = plan_check(10, cuda=True, device="NVIDIA H100 80GB HBM3")
    assert not (tests.skipped or bench.skipped or training.skipped)
    assert tests.seconds + bench.seconds + training.seconds <= 600
    assert bench.seconds <= 240 and "--fit-epochs" in bench.command
    assert str(bench_path("NVIDIA H100 80GB HBM3")) == "results/bench/bench_nvidia_h100_80gb_hbm3.json"
    stop_after = float(training.command[training.command.index("--stop-after") + 1])
    assert abs(60 * stop_after - (600 - TEST_SECONDS - BENCH_SECONDS - MARGIN_SECONDS)) < 1
    assert set(HEADLINE_STUDIES) <= set(training.command) and "full" in training.command


def test_too_few_minutes_skip_the_training_and_say_how_many_are_needed():
    *_, training = plan_check(6, cuda=True, device="gpu")
    assert training.skipped and "--minutes" in training.skipped


def test_on_a_cpu_every_step_says_why_it_is_skipped(capsys):
    assert all(step.skipped and "no CUDA device" in step.skipped for step in plan_check(10, cuda=False, device="cpu"))
    assert run_check(10, dry_run=True) == 0
    out = capsys.readouterr().out
    assert out.count("skipped, no CUDA device") == 3 and "benchmark (full mode)" in out


def test_the_training_takes_the_engine_the_benchmark_measured_faster():
    assert faster_engine({"engines": {"eager": {"wall_ms_per_step": 60.0}, "graph": {"wall_ms_per_step": 15.0}}}) == "graph"
    assert faster_engine({"engines": {"eager": {"wall_ms_per_step": 60.0}, "graph": {"skipped": "no CUDA"}}}) == "eager"
    assert faster_engine({"engines": {"eager": {"wall_ms_per_step": 10.0}, "graph": {"wall_ms_per_step": 15.0}}}) == "eager"
