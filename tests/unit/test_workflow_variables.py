"""The variable pool resolves Dify's selectors and renders `{{#node.var#}}` templates as
Dify's VariablePool does, including its quirks users' templates rely on."""

from __future__ import annotations

from workflow_graph.variables import MISSING, VariablePool, parse_selector

POOL = VariablePool.for_run(
    system={"query": "hello", "user_id": "u1"},
    environment={"region": "eu"},
    conversation={"topic": None},
).with_outputs("1711", {"text": "answer", "n": 3, "ok": True,
                        "doc": {"title": "T", "tags": ["a", "b"]}, "items": [1, 2]})


def test_selectors_of_every_scope() -> None:
    assert POOL.get(["1711", "text"]) == "answer"
    assert POOL.get("sys.query") == "hello"
    assert POOL.get(["env", "region"]) == "eu"
    assert POOL.get("conversation.topic") is None  # a stored None is a value


def test_unknown_and_short_selectors_are_missing() -> None:
    assert POOL.get("sys.files") is MISSING
    assert POOL.get(["nowhere", "x"]) is MISSING
    assert POOL.get(["1711"]) is MISSING
    assert parse_selector("a.b.c") == ("a", "b", "c")


def test_longer_selectors_walk_into_objects() -> None:
    assert POOL.get(["1711", "doc", "title"]) == "T"
    assert POOL.get(["1711", "doc", "missing"]) is MISSING
    assert POOL.get(["1711", "text", "deeper"]) is MISSING


def test_outputs_of_a_later_result_do_not_change_an_earlier_pool() -> None:
    later = POOL.with_outputs("1711", {"text": "changed"})
    assert (POOL.get("1711.text"), later.get("1711.text")) == ("answer", "changed")
    assert later.get("1711.n") == 3


def test_templates_render_values_as_text() -> None:
    rendered = POOL.render("Q: {{#sys.query#}} / A: {{#1711.text#}} x{{#1711.n#}} "
                           "{{#1711.ok#}} {{#1711.items#}} {{#1711.doc#}}")
    assert rendered == ('Q: hello / A: answer x3 True [1, 2] '
                        '{"title": "T", "tags": ["a", "b"]}')


def test_arrays_render_as_dify_segments_print_them() -> None:
    pool = VariablePool().with_outputs("n", {"words": ["你", "好"], "rows": [{"a": 1}],
                                             "none": []})
    assert pool.render("{{#n.words#}}|{{#n.rows#}}|{{#n.none#}}") == (
        '["你", "好"]|[{\'a\': 1}]|')


def test_template_references_to_nothing_stay_as_their_selector() -> None:
    # Dify's convert_template keeps the captured selector text when it resolves to nothing.
    assert POOL.render("[{{#9999.text#}}]") == "[9999.text]"
    assert POOL.render("topic={{#conversation.topic#}};") == "topic=;"


def test_text_that_is_not_a_placeholder_is_kept() -> None:
    assert POOL.render("{{ jinja }} {{#bad id!#}} 3.14") == "{{ jinja }} {{#bad id!#}} 3.14"
    assert POOL.render("") == ""
    assert POOL.render("你好 {{#sys.query#}}") == "你好 hello"
