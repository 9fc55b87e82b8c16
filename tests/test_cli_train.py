import json
import subprocess
import sys
from pathlib import Path

import pytest

import jnn
from jnn import Progress, TrainConfig
from jnn.app import cli

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--dataset", "spirals", "--hidden", "16", "--batch-size", "64", "--max-epochs", "4"]


def test_train_writes_the_run_folder_and_prints_test_accuracy(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", *FAST, "--out", str(out), "--log-every", "2"]) == 0
    text = capsys.readouterr().out
    assert "jnn train: spirals (1080 train / 120 validation / 300 test)" in text
    assert "epoch    2  train_loss" in text and "test accuracy" in text and f"run folder: {out}" in text
    for name in ("config.json", "history.json", "history.csv", "checkpoint.npz", "summary.json"):
        assert (out / name).exists(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 4 and 0.0 <= summary["test"]["accuracy"] <= 1.0


@pytest.mark.slow
def test_toml_config_then_flags(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('dataset = "xor"\nhidden = [8]\nloss = "binary"\nmax_epochs = 3\nlearning_rate = 0.2\n')
    assert cli.main(["train", "--config", str(cfg), "--learning-rate", "0.1", "--out", str(tmp_path / "r")]) == 0
    meta = json.loads((tmp_path / "r" / "config.json").read_text())
    stored = meta["config"]
    assert meta["mlp"]["hidden"] == [8] and meta["mlp"]["loss"] == "binary" and stored["learning_rate"] == 0.1
    assert stored["check_finite"] is True and "hidden" not in stored
    assert "xor" in capsys.readouterr().out
    assert cli.main(["train", "--config", str(cfg), "--no-check-finite", "--out", str(tmp_path / "r2")]) == 0
    assert json.loads((tmp_path / "r2" / "config.json").read_text())["config"]["check_finite"] is False


@pytest.mark.slow
def test_resume_continues_and_overwrite_replaces(tmp_path, capsys):
    out = str(tmp_path / "r")
    assert cli.main(["train", *FAST, "--out", out]) == 0
    assert cli.main(["train", *FAST, "--out", out, "--resume"]) == 0  # already finished: nothing more to do
    assert json.loads((tmp_path / "r" / "history.json").read_text())["epochs"] == 4
    assert cli.main(["train", *FAST[:-1], "6", "--out", out, "--overwrite"]) == 0
    assert json.loads((tmp_path / "r" / "history.json").read_text())["epochs"] == 6


@pytest.mark.parametrize(
    "argv,match",
    [
        (["--learning-rate", "0"], r"learning_rate must be in \(0, inf\]; got 0"),
        (["--batch-size", "0"], r"batch_size must be an integer in \[1, 2147483647\]; got 0"),
        (["--batch-size", "100000"], r"batch_size must be in \[1, 1080\]"),
        (["--patience", "-1"], "patience must be an integer"),
        (["--keep-prob", "2"], r"keep_prob must be in \(0, 1\]; got 2"),
        (["--sizes", "3,8,3"], "sizes must start with the data's 2 features"),
        (["--config", "/nonexistent/c.toml"], "does not exist"),
    ],
)
def test_bad_values_exit_2_and_name_the_field(argv, match, tmp_path, capsys):
    import re

    assert cli.main(["train", "--dataset", "spirals", *argv, "--out", str(tmp_path / "r")]) == 2
    assert re.search(match, capsys.readouterr().err)


def test_bad_toml_unknown_keys_and_a_foreign_run_folder(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("hidden = [8,\n")
    assert cli.main(["train", "--config", str(bad)]) == 2
    assert "is not valid TOML" in capsys.readouterr().err
    unknown = tmp_path / "u.toml"
    unknown.write_text("lr = 0.1\n")
    assert cli.main(["train", "--config", str(unknown)]) == 2
    assert "unknown config key(s) ['lr']" in capsys.readouterr().err
    afile = tmp_path / "file"
    afile.write_text("x")
    assert cli.main(["train", *FAST, "--out", str(afile)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert afile.read_text() == "x"


@pytest.mark.parametrize("argv", [["train", "--dataset", "mnist"], ["train", "--bogus"], ["train", "--mode", "x"]])
def test_unknown_flags_and_choices_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2 and "error" in capsys.readouterr().err


@pytest.mark.slow
def test_console_script_runs_in_a_fresh_process(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "jnn.app.cli", "train", *FAST, "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={"CI": "1", "PATH": ""},
    )
    assert proc.returncode == 0, proc.stderr
    assert "test accuracy" in proc.stdout


def test_help_shows_the_real_defaults_and_the_symbols_in_words(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    d = TrainConfig()
    assert f"hidden widths (default {','.join(map(str, jnn.MLP().hidden))})" in text
    assert f"η, the step size of θ ← θ − η∇θ l (default {d.learning_rate:g})" in text
    assert f"T, the examples in each minibatch (default {d.batch_size})" in text
    assert "λ, the strength of the L2 penalty λΣw²" in text and "p, the probability of keeping a unit" in text
    assert f"(default {d.momentum:g})" in text
    assert f"decoupled weight decay of --optimizer adamw (default {d.weight_decay:g})" in text
    assert "(default constant)" in text and f"warmup-cosine (default {d.warmup_epochs})" in text


def test_new_optimizer_and_schedule_flags_reach_the_config():
    args = cli.build_parser().parse_args(["train", "--optimizer", "adamw", "--weight-decay", "0.01", "--lr-schedule",
                                          "warmup-cosine", "--warmup-epochs", "3", "--monitor", "val_r2"])  # fmt: skip
    _, config, _ = cli._train_config(args)
    assert (config.optimizer, config.weight_decay, config.lr_schedule, config.warmup_epochs,
            config.early_stopping.monitor) == (
        "adamw", 0.01, "warmup-cosine", 3, "val_r2")  # fmt: skip


def test_momentum_flag_reaches_the_config(tmp_path):
    args = cli.build_parser().parse_args(["train", "--momentum", "0.5", "--optimizer", "momentum"])
    _, config, _ = cli._train_config(args)
    assert config.momentum == 0.5 and config.optimizer == "momentum"
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\); got 1"):
        cli._train_config(cli.build_parser().parse_args(["train", "--momentum", "1.0"]))


def test_log_lines_go_through_the_progress_bar_writer(capsys):
    import io

    from tqdm import tqdm

    import jnn
    from jnn.train import progress as progress_module

    written, bars = [], []

    class Bar(tqdm):  # a real bar on a string buffer, its writer spied on
        def write(self, line):
            written.append(line)

    def make(enabled, total):
        bars.append(Bar(total=total, file=io.StringIO(), smoothing=0))
        return bars[-1]

    real = progress_module.progress_bar
    progress_module.progress_bar = make
    try:
        train, _ = jnn.datasets.load("xor")
        cfg = jnn.TrainConfig(max_epochs=3, batch_size=64, early_stopping=jnn.EarlyStopping("val_accuracy"))
        jnn.fit(train, cfg, task=jnn.MLP(hidden=(4,), loss="binary"), callbacks=[Progress(log_every=1)])
    finally:
        progress_module.progress_bar = real
    assert [w.split()[:2] for w in written] == [["epoch", "1"], ["epoch", "2"], ["epoch", "3"]]
    bar = bars[0]
    assert bar.initial == 1  # the rate (and the ETA) is measured from the end of the compiled first epoch
    assert list(bar.postfix.split(","))[0].split("=")[0].strip() == "val_accuracy"  # the monitored metric first
    assert "epoch" not in capsys.readouterr().out  # nothing printed around the bar
