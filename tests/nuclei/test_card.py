"""The model card (nuclei/card.py): the committed cards round-trip byte for byte, and a card
that is incomplete, mistyped, or not the model's is refused in one line that names the field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from nuclei.card import CardError, card_path, load, save
from tests.conftest import FLOAT_MODEL, MODEL


def copy_model(model: Path, folder: Path) -> Path:
    """The model and its card, copied into `folder`: the copy's path."""
    copy = folder / model.name
    shutil.copyfile(model, copy)
    shutil.copyfile(card_path(model), card_path(copy))
    return copy


def edit_card(model: Path, section: str, key: str, value: object = None, delete: bool = False) -> None:
    card = json.loads(card_path(model).read_text())
    if delete:
        del card[section][key]
    else:
        card[section][key] = value
    card_path(model).write_text(json.dumps(card, indent=2))


def assert_one_line_naming(exc: pytest.ExceptionInfo[CardError], *words: str) -> None:
    message = str(exc.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("model", [MODEL, FLOAT_MODEL], ids=["int8", "float32"])
def test_committed_card_round_trips_byte_for_byte(tmp_path, model):
    copy = copy_model(model, tmp_path)
    assert save(load(copy), copy) == card_path(copy)
    assert card_path(copy).read_bytes() == card_path(model).read_bytes()


def test_missing_field_is_one_line_naming_it(tmp_path):
    copy = copy_model(MODEL, tmp_path)
    edit_card(copy, "input", "stride", delete=True)
    with pytest.raises(CardError) as exc:
        load(copy)
    assert_one_line_naming(exc, "'input.stride'", str(card_path(copy)))


def test_mistyped_field_is_one_line_naming_it(tmp_path):
    copy = copy_model(MODEL, tmp_path)
    edit_card(copy, "input", "stride", "x")
    with pytest.raises(CardError) as exc:
        load(copy)
    assert_one_line_naming(exc, "'input.stride'", "integer")


def test_changed_model_bytes_fail_the_sha256_check(tmp_path):
    copy = copy_model(MODEL, tmp_path)
    data = bytearray(copy.read_bytes())
    data[-1] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(CardError) as exc:
        load(copy)
    assert_one_line_naming(exc, "sha256", str(copy))


def test_save_refuses_an_invalid_card_and_writes_nothing(tmp_path):
    copy = copy_model(MODEL, tmp_path)
    before = card_path(copy).read_bytes()
    card = load(copy).model_copy(update={"sha256": "nope"})  # model_copy does not validate
    with pytest.raises(ValidationError, match="sha256"):
        save(card, copy)
    assert card_path(copy).read_bytes() == before
