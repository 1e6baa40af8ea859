"""A mistyped keyword to BatchProcessor (or the decorator) names the option it meant."""

from __future__ import annotations

import pytest

import stratabatch
from stratabatch import BatchConfig, BatchProcessor, ConfigError


def test_a_mistyped_option_suggests_the_closest_one():
    with pytest.raises(ConfigError) as e:
        BatchProcessor(window_msx=5)
    assert str(e.value) == "unknown option 'window_msx'; did you mean 'window_ms'?"
    assert e.value.field == "window_msx"
    with pytest.raises(ConfigError) as e:
        BatchProcessor(dedup_stratgy="exact")
    assert str(e.value) == "unknown option 'dedup_stratgy'; did you mean 'dedup_strategy'?"
    with pytest.raises(ConfigError, match="did you mean 'max_size'"):
        stratabatch.batch(max_sise=3)


def test_a_name_close_to_nothing_lists_the_options():
    with pytest.raises(ConfigError) as e:
        BatchProcessor(colour="blue")
    msg = str(e.value)
    assert msg.startswith("unknown option 'colour'; the options are ")
    assert all(name in msg for name in BatchConfig.option_names())


def test_several_unknown_options_are_all_named():
    with pytest.raises(ConfigError) as e:
        BatchProcessor(window_msx=5, max_sise=3)
    assert str(e.value) == (
        "unknown option 'max_sise' (also unknown: 'window_msx'); did you mean 'max_size'?"
    )


def test_assigning_a_mistyped_option_to_the_config_suggests_too():
    config = BatchProcessor().config
    with pytest.raises(ConfigError, match=r"unknown option 'max_queu'; did you mean 'max_queue'\?"):
        config.max_queu = 5
