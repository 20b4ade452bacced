"""docs/plugins.md's step type that calls the model is real: it imports only the plugin API, registers,
runs through the model, and is recorded like a built-in step."""

from __future__ import annotations

import re
import types
from pathlib import Path

from flow_engine.engine import get_engine

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def doc_file(name: str) -> str:
    [body] = re.findall(rf"^```python\n# {re.escape(name)}\n(.*?)^```", DOC.read_text(), re.S | re.M)
    return body


def test_the_documented_step_type_imports_only_the_plugin_api():
    imports = re.findall(r"^(?:from|import) (\S+)", doc_file("shout_plugin.py"), re.M)
    assert {name for name in imports if name.startswith("flow_engine")} == {"flow_engine.plugin"}


async def test_the_documented_step_type_calls_the_model_and_is_recorded():
    module = types.ModuleType("shout_plugin")
    exec(compile(doc_file("shout_plugin.py"), "docs/plugins.md", "exec"), module.__dict__)
    engine = get_engine()
    engine.plugins.register(module, name="shout")
    assert "shout" in engine.plugins.step_types()

    result = await module.ShoutStep().execute({"prompt": "say something"}, model="offline/default")
    assert result.output_content and result.output_content == result.output_content.upper()
    assert result.metadata["llm_calls"] == 1 and result.metadata["provider"] == "offline"
    [request] = engine.store.list_llm_requests()
    assert request.model == "offline/default" and request.status == "completed"
