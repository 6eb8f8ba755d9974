"""Topic name rules (proto/topic_names.py, KAFKA_SEMANTICS §9)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proto.errors import ErrorCode, InvalidRequestError, InvalidTopicError
from proto.topic_names import (
    CLUSTER_METADATA_TOPIC,
    TopicAlreadyExistsError,
    check_collision,
    is_internal,
    unify_collision_chars,
    validate_new_topic_name,
    validate_topic_name,
)


@pytest.mark.parametrize("name", ["orders", "a", "A.b_c-9", "x" * 249, "__consumer_offsets"])
def test_legal_names_pass(name: str) -> None:
    validate_topic_name(name)


@pytest.mark.parametrize(("name", "message"), [
    ("", "can't be empty"),
    (".", 'cannot be "." or ".."'),
    ("..", 'cannot be "." or ".."'),
    ("x" * 250, "longer than 249"),
    ("a b", "character other than ASCII alphanumerics"),
    ("a/b", "character other than"),
    ("caf\u00e9", "character other than"),
    ("a\n", "character other than"),
])
def test_illegal_names_are_invalid_topic_exception(name: str, message: str) -> None:
    with pytest.raises(InvalidTopicError, match=message) as info:
        validate_topic_name(name)
    assert info.value.code is ErrorCode.INVALID_TOPIC_EXCEPTION
    assert int(info.value.code) == 17


def test_dot_and_underscore_collide_with_existing_topic() -> None:
    with pytest.raises(InvalidTopicError, match="Topic 'a.b' collides with existing topic: a_b"):
        check_collision("a.b", ["x", "a_b"])
    with pytest.raises(InvalidTopicError, match="collides with existing topic: a.b"):
        check_collision("a_b", ["a.b"])


def test_names_without_collision_chars_never_collide() -> None:
    check_collision("ab", ["a_b", "a.b"])


def test_existing_name_is_topic_already_exists() -> None:
    with pytest.raises(TopicAlreadyExistsError) as info:
        check_collision("orders", ["orders"])
    assert info.value.code is ErrorCode.TOPIC_ALREADY_EXISTS


def test_internal_topics_are_recognised() -> None:
    assert is_internal("__consumer_offsets") and is_internal("__transaction_state")
    assert not is_internal("orders") and not is_internal(CLUSTER_METADATA_TOPIC)


def test_creating_cluster_metadata_is_prohibited() -> None:
    with pytest.raises(InvalidRequestError, match="prohibited"):
        validate_new_topic_name(CLUSTER_METADATA_TOPIC, [])


def test_new_topic_name_checks_syntax_before_collisions() -> None:
    with pytest.raises(InvalidTopicError, match="character other than"):
        validate_new_topic_name("a b", ["a b"])


@given(st.text(max_size=260))
def test_validation_accepts_exactly_kafkas_legal_names(name: str) -> None:
    legal = (
        0 < len(name) <= 249
        and name not in (".", "..")
        and all(c.isascii() and (c.isalnum() or c in "._-") for c in name)
    )
    try:
        validate_topic_name(name)
    except InvalidTopicError:
        assert not legal
    else:
        assert legal


@given(st.text(alphabet="ab._", min_size=1, max_size=6),
       st.text(alphabet="ab._", min_size=1, max_size=6))
def test_collision_is_symmetric_under_unification(a: str, b: str) -> None:
    if a == b:
        return
    collides = unify_collision_chars(a) == unify_collision_chars(b) and (
        "." in a or "_" in a)
    try:
        check_collision(a, [b])
    except InvalidTopicError:
        assert collides
    else:
        assert not collides
