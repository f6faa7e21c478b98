"""Settings: defaults, profiles, environment overrides, groups and their recorded sources."""

import json

import pytest

from hello_dl import groups
from hello_dl.settings import MIN_IMAGE_SIDE, PROFILES, SettingsError, load_settings, settings_from_json


def test_paper_defaults_are_the_papers_values():
    s = load_settings("paper", environ={})
    assert (s.image_size, s.batch_size, s.learning_rate, s.dropout, s.dense_units) == (299, 5, 1e-4, 0.5, 256)
    assert (s.rotation_degrees, s.width_shift, s.height_shift, s.shear, s.zoom) == (20, 0.2, 0.2, 0.2, 0.2)
    assert s.horizontal_flip and s.weights == "imagenet"
    assert s.warmup_epochs == 0 and s.finetune_epochs == 20
    assert s.class_index == {"openI_CXR": 0, "openI_abd_xray": 1}
    assert s.class_names == ("chest", "abdomen")


def test_smoke_profile_is_small_and_offline():
    s = load_settings("smoke", environ={})
    assert s.weights == "none" and s.sources["weights"] == "profile:smoke"
    # No pretrained weights: the from-scratch recipe (hello_dl.recipes), sized for seconds.
    assert s.image_size == 75 and s.warmup_epochs == 0 and s.finetune_epochs == 2
    assert s.sources["image_size"] == "recipe:from-scratch"


def test_profile_from_environment_and_any_knob_overridable():
    env = {"HELLO_DL_PROFILE": "smoke", "HELLO_DL_IMAGE_SIZE": "150", "HELLO_DL_AUGMENT": "off",
           "HELLO_DL_CLASS_NAMES": "thorax, belly"}
    s = load_settings(environ=env)
    assert s.profile == "smoke" and s.image_size == 150 and s.augment is False
    assert s.class_names == ("thorax", "belly")
    assert s.sources["image_size"] == "env:HELLO_DL_IMAGE_SIZE"
    # an argument beats the environment
    s2 = load_settings(environ=env, image_size=99)
    assert s2.image_size == 99 and s2.sources["image_size"] == "argument"


def test_printing_settings_shows_where_values_came_from():
    text = str(load_settings("smoke", environ={"HELLO_DL_SEED": "7"}))
    line = next(l for l in text.splitlines() if l.startswith("seed "))
    assert "7" in line and "env:HELLO_DL_SEED" in line


@pytest.mark.parametrize("env, message", [
    ({"HELLO_DL_IMAGE_SIZE": "big"}, "image_size"),
    ({"HELLO_DL_IMAGE_SIZE": str(MIN_IMAGE_SIDE - 1)}, f"at least {MIN_IMAGE_SIDE}"),
    ({"HELLO_DL_PROFILE": "fast"}, "Unknown profile"),
    ({"HELLO_DL_DROPOUT": "1.5"}, "dropout"),
])
def test_bad_values_are_refused_with_the_setting_named(env, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(environ=env)


def test_unknown_argument_is_refused():
    with pytest.raises(SettingsError, match="Unknown setting"):
        load_settings(environ={}, imagesize=3)


def test_groups_are_reproducible_and_cover_all_four():
    assert groups.assign_group("Alice") == groups.assign_group(" alice ")
    seen = {groups.assign_group(str(n)) for n in range(40)}
    assert seen == set(groups.GROUPS)


def test_participant_sets_group_knobs_but_explicit_knob_wins():
    name = next(str(n) for n in range(100) if groups.assign_group(str(n)) == "2B")
    s = load_settings("conference", environ={"HELLO_DL_PARTICIPANT": name})
    assert s.experiment_group == "2B" and s.augment is False and s.dropout == 0.0
    s2 = load_settings("conference", environ={"HELLO_DL_PARTICIPANT": name, "HELLO_DL_AUGMENT": "1"})
    assert s2.augment is True and s2.dropout == 0.0
    s3 = load_settings("conference", environ={}, experiment_group="1a")
    assert s3.experiment_group == "1A" and s3.augment and s3.dropout == 0.5


def test_settings_round_trip_through_json(tmp_path):
    s = load_settings("smoke", environ={}, image_size=80)
    path = tmp_path / "settings.json"
    path.write_text(s.to_json())
    assert json.loads(path.read_text())["sources"]["image_size"] == "argument"
    assert settings_from_json(path).knobs() == s.knobs()


def test_every_profile_loads():
    for name in PROFILES:
        assert load_settings(name, environ={}).profile == name


def test_numbered_participants_are_dealt_into_equal_groups():
    counts = {g: 0 for g in groups.GROUPS}
    for seat in range(1, 41):
        counts[groups.assign_group(seat)] += 1
    assert set(counts.values()) == {10}
    assert [groups.assign_group(n) for n in (1, 2, 3, 4, 5)] == ["1A", "1B", "2A", "2B", "1A"]


def test_bad_group_is_a_settings_level_error_naming_the_choices():
    from hello_dl.errors import HelloDLError

    with pytest.raises(HelloDLError, match="1A, 1B, 2A, 2B"):
        load_settings("conference", environ={}, experiment_group="3C")


def test_replace_can_change_profile_and_keeps_explicit_knobs():
    s = load_settings("smoke", environ={"HELLO_DL_SEED": "9"}, image_size=80)
    paper = s.replace(profile="paper")
    assert paper.profile == "paper" and paper.finetune_epochs == 20 and paper.weights == "imagenet"
    assert paper.image_size == 80 and paper.seed == 9
    same = s.replace(batch_size=3)
    assert same.profile == "smoke" and same.batch_size == 3 and same.image_size == 80


def test_replacing_the_group_reapplies_its_knobs_and_names_it_as_their_source():
    s = load_settings("conference", environ={}, experiment_group="1A")
    assert (s.augment, s.dropout, s.sources["augment"]) == (True, 0.5, "group:1A")
    switched = s.replace(experiment_group="2B")
    assert switched.experiment_group == "2B" and switched.augment is False and switched.dropout == 0.0
    assert switched.sources["augment"] == switched.sources["dropout"] == "group:2B"
    assert switched.sources["experiment_group"] == "argument"
    back = switched.replace(experiment_group="1b")
    assert (back.augment, back.dropout, back.sources["dropout"]) == (True, 0.0, "group:1B")
    # A participant number deals the group as load_settings does.
    seat = s.replace(experiment_group="", participant="4")
    assert seat.experiment_group == "2B" and seat.sources["augment"] == "group:2B"


def test_replacing_the_group_keeps_knobs_set_on_purpose():
    s = load_settings("conference", environ={"HELLO_DL_AUGMENT": "yes", "HELLO_DL_SEED": "9"}, dropout=0.25,
                      experiment_group="1A", image_size=150)
    switched = s.replace(experiment_group="2B")
    assert switched.augment is True and switched.sources["augment"] == "env:HELLO_DL_AUGMENT"
    assert switched.dropout == 0.25 and switched.sources["dropout"] == "argument"
    assert (switched.seed, switched.image_size, switched.profile) == (9, 150, "conference")
    assert switched.sources["seed"] == "env:HELLO_DL_SEED"
    assert switched.finetune_epochs == PROFILES["conference"]["finetune_epochs"]
