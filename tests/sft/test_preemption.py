"""`medqa.runs.preemption`: a stop file makes training checkpoint and stop at the next step end (single process here;
tests/slurm/test_slurm.py covers 2 processes under a real time-limit signal)."""

from __future__ import annotations

from transformers import TrainerControl, TrainerState, TrainingArguments

from medqa.runs.preemption import STOP_FILE_ENV, StopFileCallback, any_rank, stop_file_from_env


def test_no_stop_file_leaves_training_alone(tmp_path):
    callback = StopFileCallback(tmp_path / "stop")
    control = callback.on_step_end(TrainingArguments(output_dir=str(tmp_path), use_cpu=True), TrainerState(global_step=3),
                                   TrainerControl())
    assert not control.should_save and not control.should_training_stop and callback.stopped_at is None


def test_stop_file_saves_and_stops_at_this_step(tmp_path):
    (tmp_path / "stop").touch()
    callback = StopFileCallback(tmp_path / "stop")
    control = callback.on_step_end(TrainingArguments(output_dir=str(tmp_path), use_cpu=True), TrainerState(global_step=3),
                                   TrainerControl())
    assert control.should_save and control.should_training_stop and callback.stopped_at == 3


def test_stop_file_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(STOP_FILE_ENV, raising=False)
    assert stop_file_from_env() is None
    monkeypatch.setenv(STOP_FILE_ENV, str(tmp_path / "s"))
    assert stop_file_from_env() == tmp_path / "s"


def test_any_rank_without_a_process_group_is_the_local_flag():
    assert any_rank(True) is True and any_rank(False) is False
