"""Replicates that differ: each seat trains its own run of its group's recipe (issue 16).

A participant's seed comes from their seat: the same seat repeats its run exactly, two seats of
one group train different runs, no seat keeps the default seed, and an explicit seed wins.
"""

from __future__ import annotations

import pytest

from hello_dl import groups, train
from hello_dl.settings import Settings, load_settings

DEFAULT_SEED = Settings().seed


def test_a_seat_gets_its_own_seed_and_says_where_it_came_from():
    seat = load_settings("smoke", environ={}, participant="7")
    assert seat.seed != DEFAULT_SEED
    assert seat.seed == groups.seat_seed("7", DEFAULT_SEED)
    assert seat.sources["seed"] == f"seat 7 (from seed {DEFAULT_SEED})"
    assert f"seat 7 (from seed {DEFAULT_SEED})" in str(seat)  # the settings table's source column


def test_the_same_seat_is_the_same_seed_however_it_is_written_and_wherever_it_comes_from():
    typed = load_settings("conference", environ={}, participant=" 07")
    from_env = load_settings("conference", environ={"HELLO_DL_PARTICIPANT": "7"})
    assert typed.seed == from_env.seed == groups.seat_seed(7, DEFAULT_SEED)
    assert load_settings(environ={}, participant="Ada").seed == load_settings(environ={}, participant="ada").seed


def test_seats_of_one_room_all_get_different_seeds():
    seeds = {groups.seat_seed(number, DEFAULT_SEED) for number in range(1, 501)}
    assert len(seeds) == 500
    assert all(0 <= seed < 2**31 for seed in seeds)
    names = {groups.seat_seed(name, DEFAULT_SEED) for name in ("ada", "grace", "seat-07", "7")}
    assert len(names) == 4


def test_without_a_seat_the_default_seed_stays_even_with_a_group_card():
    assert load_settings(environ={}).seed == DEFAULT_SEED
    card = load_settings(environ={}, experiment_group="2B")
    assert card.seed == DEFAULT_SEED and card.sources["seed"] == "default"


def test_an_explicit_seed_wins_over_the_seat():
    from_env = load_settings(environ={"HELLO_DL_SEED": "5", "HELLO_DL_PARTICIPANT": "7"})
    assert (from_env.seed, from_env.sources["seed"]) == (5, "env:HELLO_DL_SEED")
    argument = load_settings(environ={}, participant="7", seed=9)
    assert (argument.seed, argument.sources["seed"]) == (9, "argument")


def test_changing_the_seat_changes_the_seed_and_leaving_it_restores_the_default():
    seven = load_settings("smoke", environ={}, participant="7")
    three = seven.replace(participant="3")
    assert three.seed == groups.seat_seed("3", DEFAULT_SEED) != seven.seed
    assert seven.replace(participant="").seed == DEFAULT_SEED
    kept = load_settings("smoke", environ={}, participant="7", seed=11).replace(participant="3")
    assert kept.seed == 11  # an explicit seed travels through a change of seat


def test_the_headless_runner_lets_each_kernel_derive_the_seats_seed_again():
    from hello_dl import runner

    seat = load_settings("smoke", environ={}, participant="7")
    env = runner.kernel_environment(seat, base={})
    assert env["HELLO_DL_PARTICIPANT"] == "7" and "HELLO_DL_SEED" not in env  # so a changed seat re-derives it
    assert load_settings(environ=env).seed == seat.seed
    explicit = runner.kernel_environment(load_settings("smoke", environ={}, participant="7", seed=3), base={})
    assert explicit["HELLO_DL_SEED"] == "3"


def _one_epoch(smoke_settings, participant: str):
    """One real epoch (frozen base, new head) on the shared dataset, as the given seat."""
    settings = smoke_settings(participant=participant, warmup_epochs=1, finetune_epochs=0, batch_size=13,
                              dense_units=16)
    return settings, train.train(settings, verbose=0)


@pytest.mark.slow  # three real one-epoch trainings on the shared dataset (about 20 s each)
def test_two_seats_of_one_group_train_different_runs_and_a_seat_repeats_its_own(smoke_settings):
    three, first = _one_epoch(smoke_settings, "3")
    seven, other = _one_epoch(smoke_settings, "7")
    _, again = _one_epoch(smoke_settings, "3")
    assert three.experiment_group == seven.experiment_group == "2A"  # the same recipe
    assert (three.augment, three.dropout) == (seven.augment, seven.dropout)
    assert first.metrics["seed"] == three.seed != seven.seed == other.metrics["seed"]
    assert first.history["loss"] != other.history["loss"]  # independent replicates
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert first.history[key] == again.history[key], key  # the same seat repeats its run
