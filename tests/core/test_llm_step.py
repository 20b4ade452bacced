"""What an LLM step's prompt template sees: its validated inputs, field by field."""

from __future__ import annotations

from functools import cached_property

from pydantic import BaseModel, ConfigDict

from flow_engine.llm_step import input_variables


class Author(BaseModel):
    name: str


class Inputs(BaseModel):
    model_config = ConfigDict(extra="allow")

    title: str
    words: int = 300
    author: Author

    @cached_property
    def shout(self) -> str:  # kept in the instance's __dict__ once read: not a field
        return self.title.upper()


def test_template_variables_are_the_validated_fields():
    inputs = Inputs.model_validate({"title": "Cats", "author": {"name": "Ann"}, "words": "120", "mood": "x"})
    variables = input_variables(inputs)
    assert variables == {"title": "Cats", "words": 120, "author": Author(name="Ann")}  # coerced; extras out
    assert isinstance(variables["author"], Author)  # {{ author.name }} works in a template
    variables["title"] = "changed"
    assert inputs.title == "Cats"  # a template's variables are a copy
    assert inputs.shout == "CATS"
    assert input_variables(inputs) == {"title": "Cats", "words": 120, "author": Author(name="Ann")}


def test_a_plain_step_s_dict_inputs_are_the_variables():
    assert input_variables({"prompt": "hi"}) == {"prompt": "hi"}
    assert input_variables(None) == {}
